"""The whole default pipeline through `dvc repro` in a temporary copy of the repository,
on a shortened smoke recipe (1 epoch, answers cut at 32 tokens) so it takes about a minute; then the README's
`dvc exp run -S lora.r=320`, and that experiment shared with a teammate through a DVC remote
(`dvc exp push`/`dvc exp pull`): the one place a test trains for an experiment, so it is shared
from here rather than trained again elsewhere."""

import csv
import io
import json
import re
import subprocess

import pytest
from conftest import repo_copy, sh, short_answers
from remotes import add_remote, clone

from pronounce.data.corpus_pin import dvc_status
from pronounce.scoring.paper import HEADLINE

pytestmark = pytest.mark.slow  # the whole pipeline through dvc repro


@pytest.fixture(scope="module")
def repo(tmp_path_factory, pipeline_cache):
    def one_epoch(params):
        params["train"]["recipes"]["smoke"]["epochs"] = 1
        params["eval"]["epochs"] = "none"
        short_answers(params)

    # decode, base, materialize and evaluate_base come from the test run's run cache (run once for
    # the pipeline tests); every other stage runs here.
    dst = repo_copy(tmp_path_factory.mktemp("pipeline") / "repo", one_epoch, cache=pipeline_cache)
    out = sh("dvc", "repro", cwd=dst)
    assert "Stage 'decode' is cached" in out and "Running stage 'train@paper_r64'" in out, out[-2000:]
    return dst


def test_repro_produces_every_metric_and_the_report(repo):
    for config in ("paper_r64", "pretrained_r320", "unfreeze"):
        metrics = json.loads((repo / f"metrics/{config}.json").read_text())
        assert set(HEADLINE) | {"parse_rate", "epochs", "paper", "diff"} <= set(metrics)
        assert "0" in metrics["epochs"]  # the untrained base model's row
        # every one of the 40 bundled test utterances scored, by the final adapter of the 1-epoch recipe
        assert (metrics["n_utterances"], metrics["epoch"]) == (40, 1)
        assert set(HEADLINE) <= set(metrics["paper"])
    report = (repo / "metrics/report.md").read_text()
    assert all(c in report for c in ("paper_r64", "pretrained_r320", "unfreeze", "builtin:tiny"))
    assert (repo / "data/decoded/report.json").is_file() and (repo / "models/paper_r64/adapter").is_dir()


def test_second_repro_is_a_no_op(repo):
    out = sh("dvc", "repro", cwd=repo)
    assert re.findall(r"Running stage '([^']+)'", out) == ["corpus"], out  # it re-pins, alone
    assert "Stage 'decode' didn't change, skipping" in out


LORA_EXP = "lora-r320"


@pytest.fixture(scope="module")
def lora_experiment(repo, tmp_path_factory):
    """The team's folder remote committed (docs/reproducibility.md, "Share a run"), then `dvc exp run -S lora.r=320`:
    its output."""
    add_remote(repo, str(tmp_path_factory.mktemp("dvc-remote")), commit_only=".dvc/config")
    return sh("dvc", "exp", "run", "-n", LORA_EXP, "-S", "lora.r=320", cwd=repo)


def test_lora_rank_experiment_reruns_only_paper_r64(repo, lora_experiment):
    out = lora_experiment
    assert "Running stage 'train@paper_r64'" in out
    assert "Running stage 'train@pretrained_r320'" not in out and "Running stage 'train@unfreeze'" not in out
    assert "Running stage 'decode'" not in out and "Running stage 'materialize'" not in out
    adapter = json.loads((repo / "models/paper_r64/adapter/adapter_config.json").read_text())
    assert adapter["r"] == 320
    shown = subprocess.run(["dvc", "exp", "show", "--csv"], cwd=repo, capture_output=True, text=True, check=True)
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    assert "320" in [row.get("lora.r") for row in rows], "dvc exp show lists the experiment"
    diff = sh("dvc", "metrics", "diff", cwd=repo)
    assert "metrics/paper_r64/headline.json" in diff  # the default metrics: the headline


def test_lora_rank_experiment_round_trips_through_a_remote(repo, lora_experiment, tmp_path):
    origin = tmp_path / "origin.git"
    sh("git", "clone", "-q", "--bare", str(repo), str(origin), cwd=tmp_path)  # the team's git server
    sh("git", "remote", "add", "origin", str(origin), cwd=repo)
    sh("dvc", "exp", "push", "origin", LORA_EXP, cwd=repo)  # its git ref, and its outputs to the DVC remote

    teammate = clone(origin, tmp_path / "teammate")
    assert LORA_EXP in sh("dvc", "exp", "list", "origin", cwd=teammate)
    sh("dvc", "exp", "pull", "origin", LORA_EXP, cwd=teammate)
    shown = subprocess.run(["dvc", "exp", "show", "--csv"], cwd=teammate, capture_output=True, text=True, check=True)
    rows = {row["Experiment"]: row for row in csv.DictReader(io.StringIO(shown.stdout))}
    assert rows[LORA_EXP]["lora.r"] == "320", "the teammate's dvc exp show lists the experiment"
    assert rows[LORA_EXP]["metrics/paper_r64/headline.json:per"] not in ("", "-"), "with its metrics"
    assert rows[LORA_EXP]["metrics/paper_r64/verdict.json:per"] not in ("", "-"), "and their verdicts"

    sh("dvc", "exp", "apply", LORA_EXP, cwd=teammate)
    assert "r: 320" in (teammate / "params.yaml").read_text()
    adapter = json.loads((teammate / "models/paper_r64/adapter/adapter_config.json").read_text())
    assert adapter["r"] == 320, "the experiment's adapter, pulled, not retrained"
    assert dvc_status(teammate) == {}  # up to date (the corpus stage's pin current)
