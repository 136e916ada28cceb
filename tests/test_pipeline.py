"""The whole default pipeline through `dvc repro` in a temporary copy of the repository,
on a shortened smoke recipe (1 epoch) so it takes about a minute."""

import csv
import io
import json
import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.slow  # the whole pipeline through dvc repro

HEADLINE = ("accuracy_pcc", "fluency_pcc", "prosodic_pcc", "total_pcc", "wer", "per", "precision", "recall", "f1")


def sh(*args, cwd):
    run = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True)
    assert run.returncode == 0, f"{' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout + run.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    dst = tmp_path_factory.mktemp("pipeline") / "repo"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["train"]["recipes"]["smoke"]["epochs"] = 1
    params["eval"]["epochs"] = "none"
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dst / "dvc.lock").unlink(missing_ok=True)
    sh("git", "init", "-q", cwd=dst)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=dst)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy", cwd=dst)
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
