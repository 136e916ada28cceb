"""pronounce.checks.repro_check: the comparisons on crafted inputs, and a short training run on a
simulated other machine (another thread count and CPU capability) within the stated tolerance."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

from pronounce.checks.repro_check import LOSS_RTOL, LOSS_STEPS, compare_curve, moved, out_hashes, read_curve

COMMITTED = {5: 7.62, 10: 7.317, 15: 7.0447, LOSS_STEPS: 5.5, LOSS_STEPS + 5: 4.0}


def test_a_curve_within_tolerance_passes_and_says_by_how_much():
    now = {s: v * (1 + LOSS_RTOL / 2) for s, v in COMMITTED.items()}
    now[LOSS_STEPS + 5] = 9.0  # after the compared steps: reported, not failed
    summary, failures = compare_curve("paper_r64", COMMITTED, now)
    assert failures == []
    assert f"4 logged steps up to step {LOSS_STEPS}" in summary and "5.0e-05" in summary
    assert "1 later steps differ by up to 1.2e+00 (not compared)" in summary


def test_a_curve_outside_tolerance_fails_naming_the_config_and_the_step():
    now = dict(COMMITTED)
    now[10] = COMMITTED[10] * (1 + 3 * LOSS_RTOL)
    summary, failures = compare_curve("pretrained_r320", COMMITTED, now)
    assert len(failures) == 1
    assert failures[0].startswith("train@pretrained_r320: loss at step 10 is ")
    assert "relative difference 3.0e-04" in failures[0]


def test_a_missing_step_or_an_empty_curve_fails():
    now = {s: v for s, v in COMMITTED.items() if s != 15}
    assert compare_curve("c", COMMITTED, now)[1] == ["train@c: no logged loss at step 15 (committed 7.0447)"]
    assert compare_curve("c", {LOSS_STEPS + 1: 1.0}, {LOSS_STEPS + 1: 1.0})[1] == [
        f"train@c: the committed curve logs no step <= {LOSS_STEPS}"]


def test_read_curve_reads_dvclive_tsv():
    assert read_curve("step\tloss\n5\t7.62\n10\t7.317\n") == {5: 7.62, 10: 7.317}
    committed = (ROOT / "dvclive/paper_r64/plots/metrics/train/loss.tsv").read_text()
    assert min(read_curve(committed)) <= LOSS_STEPS  # the committed curves log steps that are compared


def test_moved_names_each_stage_and_path_whose_hash_changed():
    before = out_hashes({"stages": {"base": {"outs": [{"path": "models/base", "md5": "a.dir"}]},
                                    "decode": {"outs": [{"path": "data/decoded", "md5": "d.dir"}]}}})
    after = {"base": {"models/base": "b.dir"}, "decode": {"data/decoded": "d.dir"}}
    assert moved(before, after, ("decode", "base")) == ["base: models/base a.dir -> b.dir"]


TRAIN = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from conftest import raw_params
from pronounce.core.params import parse_params
from pronounce.training.train import run_train
ws, out = Path(sys.argv[1]), Path(sys.argv[2])
raw = raw_params()
raw["train"]["profile"] = "smoke"
raw["train"]["recipes"]["smoke"].update(epochs=2, batch_size=4, logging_steps=1, cpu_threads=0)
run_train(parse_params(raw).train_job("paper_r64"), ws / "base", ws / "decoded", ws / "materialized",
          out / "model", out / "live", runs_dir=out / "runs")
print(torch.backends.cpu.get_cpu_capability().lower(), torch.get_num_threads())
"""


def train_on(machine: dict, ws, out):
    """The smoke recipe, shortened, in a fresh process with `machine`'s environment."""
    env = {**os.environ, **machine}
    run = subprocess.run([sys.executable, "-c", TRAIN.format(tests=str(ROOT / "tests")), str(ws), str(out)],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-2:] == [machine["ATEN_CPU_CAPABILITY"], machine["OMP_NUM_THREADS"]], run.stdout
    return read_curve((out / "live/plots/metrics/train/loss.tsv").read_text())


@pytest.mark.slow  # trains twice
def test_a_run_on_another_machine_passes_the_cross_machine_tolerance(training_ws, tmp_path):
    ws = training_ws  # the test run's, read only: both runs write under tmp_path
    best = torch.backends.cpu.get_cpu_capability().lower()
    here = train_on({"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": best}, ws, tmp_path / "here")
    # MKL_CBWR=COMPATIBLE: MKL's matrix products (which ATEN_CPU_CAPABILITY does not reach) take
    # the code path of a generic x86-64 CPU, as another CPU's would differ from this one's.
    there = train_on({"OMP_NUM_THREADS": "2", "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"},
                     ws, tmp_path / "there")
    assert len(here) == 8
    summary, failures = compare_curve("paper_r64", here, there)
    assert failures == [], summary
    # The simulation really changed the arithmetic (else this test would test nothing).
    adapter = "model/adapter/adapter_model.safetensors"
    assert (tmp_path / "here" / adapter).read_bytes() != (tmp_path / "there" / adapter).read_bytes()
