"""The whole default pipeline through `dvc repro` in a temporary copy of the repository,
on a shortened smoke recipe (1 epoch) so it takes about a minute."""

import csv
import io
import json
import subprocess

import pytest
from conftest import repo_copy, sh

from pronounce.paper import HEADLINE

pytestmark = pytest.mark.slow  # the whole pipeline through dvc repro


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    def one_epoch(params):
        params["train"]["recipes"]["smoke"]["epochs"] = 1
        params["eval"]["epochs"] = "none"

    dst = repo_copy(tmp_path_factory.mktemp("pipeline") / "repo", one_epoch)
    sh("dvc", "repro", cwd=dst)
    return dst


def test_repro_produces_every_metric_and_the_report(repo):
    for config in ("paper_r64", "pretrained_r320"):
        metrics = json.loads((repo / f"metrics/{config}.json").read_text())
        assert set(HEADLINE) | {"parse_rate", "epochs", "paper", "diff"} <= set(metrics)
        assert "0" in metrics["epochs"]  # the untrained base model's row
        # every one of the 40 bundled test utterances scored, by the final adapter of the 1-epoch recipe
        assert (metrics["n_utterances"], metrics["epoch"]) == (40, 1)
        assert set(HEADLINE) <= set(metrics["paper"])
    report = (repo / "metrics/report.md").read_text()
    assert "paper_r64" in report and "pretrained_r320" in report and "builtin:tiny" in report
    assert (repo / "data/decoded/report.json").is_file() and (repo / "models/paper_r64/adapter").is_dir()


def test_second_repro_is_a_no_op(repo):
    out = sh("dvc", "repro", cwd=repo)
    assert "Running stage" not in out and "up to date" in out


def test_lora_rank_experiment_reruns_only_paper_r64(repo):
    out = sh("dvc", "exp", "run", "-S", "lora.r=320", cwd=repo)
    assert "Running stage 'train@paper_r64'" in out
    assert "Running stage 'train@pretrained_r320'" not in out
    assert "Running stage 'decode'" not in out and "Running stage 'materialize'" not in out
    adapter = json.loads((repo / "models/paper_r64/adapter/adapter_config.json").read_text())
    assert adapter["r"] == 320
    shown = subprocess.run(["dvc", "exp", "show", "--csv"], cwd=repo, capture_output=True, text=True, check=True)
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    assert "320" in [row.get("lora.r") for row in rows], "dvc exp show lists the experiment"
    diff = sh("dvc", "metrics", "diff", cwd=repo)
    assert "metrics/paper_r64.json" in diff
