"""Sharing a run through a DVC remote (docs/reproducibility.md, "Share a run") against real storage: a folder, and
an S3 endpoint on localhost (tests/remotes.py). The run shared is the workspace's own `dvc repro`
of the embedded default (marker pipeline_outputs: skipped until it exists; .ci/run runs these
right after its `dvc repro`), so no pipeline runs here: push, a teammate's fresh clone, `dvc
pull`, and the teammate's workspace is the run, with nothing left to reproduce."""

import re

import pytest
import yaml
from conftest import sh
from remotes import S3_BUCKET, add_remote, clone, moto_s3, published_run, reproduced_workspace_or_skip

from pronounce.data.corpus_pin import dvc_status

pytestmark = [pytest.mark.pipeline_outputs, pytest.mark.slow]  # minutes: push, clone, pull


@pytest.fixture
def run(tmp_path):
    reproduced_workspace_or_skip()
    return published_run(tmp_path / "run")


def cached_outputs(repo) -> list[str]:
    """Every output dvc.lock caches (what `dvc push` sends)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return sorted(o["path"] for stage in lock["stages"].values() for o in stage.get("outs", []))


def round_trip(run, teammate):
    pushed = sh("dvc", "push", cwd=run)
    assert "pushed" in pushed, pushed
    clone(run, teammate)
    assert not (teammate / "models").exists(), "a fresh clone has no outputs before the pull"
    sh("dvc", "pull", cwd=teammate)
    outputs = cached_outputs(teammate)
    # the decoded corpus, the base model, adapters, predictions: every cached output arrived
    assert {"data/decoded", "models/base", "models/paper_r64", "predictions/paper_r64", "predictions/base"} <= set(outputs)
    assert [o for o in outputs if not (teammate / o).exists()] == []
    assert dvc_status(teammate) == {}  # up to date (the corpus stage's pin current)
    reproduced = sh("dvc", "repro", cwd=teammate)
    assert re.findall(r"Running stage '([^']+)'", reproduced) == ["corpus"], reproduced  # it re-pins, alone


def test_folder_remote_round_trip(run, tmp_path):
    add_remote(run, str(tmp_path / "remote"))
    round_trip(run, tmp_path / "teammate")
    assert any((tmp_path / "remote/files/md5").iterdir()), "the objects live in the remote folder"


def test_s3_remote_round_trip(run, tmp_path):
    with moto_s3(tmp_path) as endpoint:
        add_remote(run, f"s3://{S3_BUCKET}/pronounce", endpoint)
        round_trip(run, tmp_path / "teammate")
