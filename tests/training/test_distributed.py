"""train.num_processes > 1: the stage reruns itself once as N DDP processes (gloo on a CPU),
they train the adapter one process trains with the same effective batch, and every output is
written once, by rank 0."""

import copy
import json
import os
import subprocess
import sys

import pyarrow as pa
import pytest
import torch
import yaml
from accelerate.commands.launch import launch_command_parser
from conftest import ROOT

from pronounce.core.artifacts import read_arrow
from pronounce.core.errors import ParamsError
from pronounce.core.params import load_params
from pronounce.task.materialize import run_materialize
from pronounce.training.launch import LAUNCHED, relaunch_command
from pronounce.training.train import sft_config

ARGV = ["stages/train.py", "paper_r64", "--base", "models/base", "--decoded", "data/decoded", "--materialized",
        "data/materialized", "--out", "models/paper_r64", "--live", "dvclive/paper_r64"]


@pytest.fixture
def no_launcher(monkeypatch):
    for var in ("LOCAL_RANK", "WORLD_SIZE", LAUNCHED):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a machine with GPUs
    return monkeypatch


def test_one_process_is_not_relaunched(no_launcher):
    assert relaunch_command(1, ARGV) is None


def test_the_relaunch_is_an_explicit_multi_process_launch(no_launcher):
    command, env = relaunch_command(4, ARGV)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    args = launch_command_parser().parse_args(command[3:])  # accelerate's own parser reads it so
    assert args.multi_gpu and not args.cpu and args.num_processes == 4 and args.num_machines == 1
    assert args.mixed_precision == "no"  # the recipe's precision, not a default accelerate config's
    assert [args.training_script, *args.training_script_args] == ARGV
    assert env[LAUNCHED] == "1"  # the marker its processes inherit


def test_a_launched_process_never_relaunches(no_launcher):
    no_launcher.setenv(LAUNCHED, "1")  # started by our relaunch (LOCAL_RANK may not be set yet)
    assert relaunch_command(2, ARGV) is None
    no_launcher.delenv(LAUNCHED)
    no_launcher.setenv("LOCAL_RANK", "0")  # started by a user's own launcher (several machines)
    assert relaunch_command(2, ARGV) is None


def test_more_processes_than_gpus_is_refused(no_launcher):
    no_launcher.setattr(torch.cuda, "is_available", lambda: True)
    no_launcher.setattr(torch.cuda, "device_count", lambda: 2)
    command, _ = relaunch_command(2, ARGV)  # as many processes as GPUs: launched
    assert launch_command_parser().parse_args(command[3:]).num_processes == 2
    with pytest.raises(ParamsError, match=r"train\.num_processes is 4 but this machine has 2 GPU\(s\)"):
        relaunch_command(4, ARGV)


def test_one_process_on_several_gpus_reruns_on_the_first_only(no_launcher):
    """trl refuses the nn.DataParallel transformers gives one process that sees several GPUs: the
    stage reruns itself once, seeing one GPU, and says so in one line (before anything loads)."""
    no_launcher.setattr(torch.cuda, "is_available", lambda: True)
    no_launcher.setattr(torch.cuda, "device_count", lambda: 2)
    no_launcher.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    notes = []
    command, env = relaunch_command(1, ARGV, note=notes.append)
    assert command == [sys.executable, *ARGV]  # the same stage, not a DDP launch
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env[LAUNCHED] == "1"  # its child never relaunches
    assert notes == ["train.num_processes is 1 but this machine has 2 GPUs: training on one "
                     "(CUDA_VISIBLE_DEVICES=0); set train.num_processes to use more"]
    no_launcher.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the first of the GPUs the user made visible
    assert relaunch_command(1, ARGV, note=notes.append)[1]["CUDA_VISIBLE_DEVICES"] == "3"
    no_launcher.setattr(torch.cuda, "device_count", lambda: 1)  # one GPU: nothing to restrict
    assert relaunch_command(1, ARGV, note=notes.append) is None
    no_launcher.setattr(torch.cuda, "device_count", lambda: 2)
    no_launcher.setenv(LAUNCHED, "1")  # the rerun itself
    assert relaunch_command(1, ARGV, note=notes.append) is None
    assert len(notes) == 2


def test_grad_accum_is_split_over_the_processes(tmp_path):
    recipe = load_params(ROOT / "params.yaml").train.recipes["paper"]
    assert recipe.grad_accum == 8
    assert sft_config(recipe, tmp_path, seed=1, num_processes=2).gradient_accumulation_steps == 4
    assert sft_config(recipe, tmp_path, seed=1, num_processes=8).gradient_accumulation_steps == 1
    with pytest.raises(ParamsError, match=r"train\.num_processes 3 does not divide the recipe's grad_accum 8"):
        sft_config(recipe, tmp_path, seed=1, num_processes=3)


def test_params_refuse_a_process_count_that_breaks_the_effective_batch(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(profile="paper", num_processes=3)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"train\.num_processes 3 does not divide train\.recipes\.paper\.grad_accum 8"):
        load_params(tmp_path / "params.yaml")


# ------------------------------------------------------------------ two real processes


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, decoded_bundle, tiny_base):
    """The stage's inputs at the paths it reads, on the first 8 utterances (16 instances)."""
    import shutil

    ws = tmp_path_factory.mktemp("ddp")
    shutil.copytree(decoded_bundle, ws / "data/decoded")  # the test run's, copied to the stage's paths
    shutil.copytree(tiny_base, ws / "models/base")
    from pronounce.model.processor import load_processor

    run_materialize(ws / "data/decoded", ws / "data/materialized", load_processor(ws / "models/base").audio_token,
                    progress=False)
    table = read_arrow(ws / "data/materialized/train.arrow").slice(0, 16)
    with pa.OSFile(str(ws / "slice.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    (ws / "slice.arrow").replace(ws / "data/materialized/train.arrow")
    return ws


def run_stage(workspace, tmp_path, processes: int):
    """`python stages/train.py paper_r64 ...` (ARGV) in a copy of the workspace; returns the folder and stdout."""
    folder = tmp_path / f"n{processes}"
    folder.mkdir()
    (folder / "models").mkdir()
    for sub in ("data", "models/base"):  # the inputs, read only; the stage writes models/paper_r64
        os.symlink(workspace / sub, folder / sub)
    params = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))
    # 16 instances in batches of 4: one process accumulates 2 batches a step, two processes 1 each.
    params["train"].update(profile="smoke", num_processes=processes)
    params["train"]["recipes"]["smoke"].update(epochs=2, batch_size=4, grad_accum=2, logging_steps=1,
                                               learning_rate=3e-3)
    params["lora"]["dropout"] = 0.0  # each rank draws its own dropout masks: not one process's
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", LAUNCHED)}
    run = subprocess.run([sys.executable, str(ROOT / ARGV[0]), *ARGV[1:]], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return folder, run.stdout


@pytest.mark.slow
def test_two_processes_train_the_adapter_one_process_trains(workspace, tmp_path):
    one, _ = run_stage(workspace, tmp_path, 1)
    two, stdout = run_stage(workspace, tmp_path, 2)
    assert json.loads((two / "runs/paper_r64/timing.json").read_text())["processes"] == 2  # really two

    # Tolerance: none. The same micro-batches reach the optimiser either way (grouped by the
    # effective batch), and with two processes the all-reduce adds two gradients, where a+b == b+a
    # in floating point. With more processes the sum's association (reduction order) changes,
    # and Adam's first steps (about lr * sign(g)) could turn that 1e-7 into lr-sized differences
    # of near-zero gradients, so this exact check is for N = 2.
    for folder in ("adapter", "epoch-1", "epoch-2"):
        a = (one / "models/paper_r64" / folder / "adapter_model.safetensors").read_bytes()
        b = (two / "models/paper_r64" / folder / "adapter_model.safetensors").read_bytes()
        assert a == b, folder

    # Each output once, from rank 0: one summary line, one DVCLive log with one row a step,
    # identical to one process's (rank 1 opening its own Live would have emptied the folder).
    assert stdout.count("train paper_r64:") == 1
    assert sorted(p.name for p in (two / "models/paper_r64").iterdir()) == ["adapter", "epoch-1", "epoch-2", "processor",
                                                                         "training.json"]
    live = "plots/metrics/train/loss.tsv"
    assert (two / "dvclive/paper_r64" / live).read_text() == (one / "dvclive/paper_r64" / live).read_text()
    assert len((two / "dvclive/paper_r64" / live).read_text().splitlines()) == 1 + 4  # header + 4 steps
    assert len(list((two / "runs/paper_r64/tensorboard").rglob("events.out.tfevents.*"))) == 1
