"""pronounce.checks.verify_pulled: a run's metrics and report re-derived from its pulled predictions.

The comparison itself on made-up metrics; then, on the workspace's own `dvc repro` (marker
pipeline_outputs, as tests/pipeline/test_remote.py), the README's reader: push from the author's clone
to a folder remote, a reader's clone pulls the predictions and test labels only, and the check
finds the committed numbers identical; one answer altered in the remote's copy, and a second
reader's check fails naming the metric it moved."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, sh
from remotes import add_remote, clone, published_run, reproduced_workspace_or_skip

from pronounce.checks.verify_pulled import (
    PULL_HINT,
    PULL_TARGETS,
    compare_metrics,
    compare_text,
    flatten,
    main,
    metric_differences,
)
from pronounce.task.parse import SUCCESS


def test_flatten_names_each_leaf_by_its_path():
    assert flatten({"a": 1, "epochs": {"3": {"per": 0.5, "paper": None}}, "diff": {}}) == {
        "a": 1, "epochs.3.per": 0.5, "epochs.3.paper": None, "diff": {}}


def test_differences_name_the_metric_and_both_values():
    committed = {"wer": 0.9, "epochs": {"1": {"accuracy_pcc": None, "per": 0.8}}}
    recomputed = {"wer": 0.9, "epochs": {"1": {"accuracy_pcc": 0.12, "per": 0.8}}, "new": 1}
    assert metric_differences(committed, recomputed) == [
        "epochs.1.accuracy_pcc: committed null, recomputed 0.12", "new: committed missing, recomputed 1"]
    assert metric_differences(committed, json.loads(json.dumps(committed))) == []


def test_files_compare_by_bytes_and_report_by_metric_or_line(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"per": 0.5, "wer": 1.0}\n')
    b.write_text('{"per": 0.5, "wer": 1.0}\n')
    assert compare_metrics("cfg", a, b) == []
    b.write_text('{"wer": 1.0, "per": 0.5}\n')
    assert compare_metrics("cfg", a, b) == ["cfg: same values, different bytes (formatting)"]
    b.write_text('{"per": 0.25, "wer": 1.0}\n')
    assert compare_metrics("cfg", a, b) == ["cfg: per: committed 0.5, recomputed 0.25"]
    assert compare_metrics("cfg", tmp_path / "none.json", b)[0].startswith("cfg: ")
    a.write_text("# T\nrow 1\nrow 2\n")
    b.write_text("# T\nrow 1\nrow 3\n")
    (diff,) = compare_text("report.md", a, b)
    assert "-row 2" in diff and "+row 3" in diff and "row 1" not in diff


def test_missing_predictions_name_what_to_pull(tmp_path, monkeypatch, capsys):
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "data/decoded/test.arrow" in err and "predictions/base" in err and PULL_HINT in err


def verify_in(repo, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pronounce.checks.verify_pulled", *args], cwd=repo, capture_output=True,
                          text=True)


def tamper_one_apa_answer(remote, run, config) -> str:
    """Alter the first APA answer of `config`'s final predictions in the remote's copy (its file
    keeps its content-hash name); the metric that must move: the accuracy PCC when the answer had
    parsed (its score changes), else the parse rate (it now parses)."""
    lock = yaml.safe_load((run / "dvc.lock").read_text())
    dir_md5 = lock["stages"][f"evaluate@{config}"]["outs"][0]["md5"]
    obj = lambda md5: remote / "files" / "md5" / md5[:2] / md5[2:]  # noqa: E731  DVC's object layout
    entries = json.loads(obj(dir_md5).read_text())
    final = obj(next(e["md5"] for e in entries if e["relpath"] == "final.jsonl"))
    rows = [json.loads(line) for line in final.read_text().splitlines()]
    row = next(r for r in rows if r["task"] == "apa")
    if row["status"] in SUCCESS:
        row["fields"]["accuracy"] = (row["fields"]["accuracy"] + 5) % 11
        moved = "accuracy_pcc"
    else:
        row.update(status="json", flags=[], fields={"accuracy": 10, "fluency": 10, "prosodic": 10, "total": 10})
        moved = "parse_rate"
    final.chmod(0o644)  # DVC leaves its objects read-only
    final.write_text("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows))
    return moved


@pytest.mark.pipeline_outputs
@pytest.mark.slow  # a minute: push, two clones, two pulls
def test_pulled_predictions_reproduce_the_run_and_a_tampered_answer_is_named(tmp_path):
    reproduced_workspace_or_skip()
    run = published_run(tmp_path / "run")
    remote = tmp_path / "remote"
    add_remote(run, str(remote))
    sh("dvc", "push", cwd=run)

    reader = clone(run, tmp_path / "reader")
    sh("dvc", "pull", *PULL_TARGETS, cwd=reader)
    assert not (reader / "models").exists() and not (reader / "data/materialized").exists(), "no model pulled"
    checked = verify_in(reader)
    assert checked.returncode == 0, checked.stderr
    assert "IDENTICAL" in checked.stdout
    assert "Data and pipelines are up to date." not in sh("dvc", "status", cwd=reader), "the reader has no model"

    moved = tamper_one_apa_answer(remote, run, "paper_r64")
    second = clone(run, tmp_path / "second-reader")
    # --pull: the same pull, as CI's remote job runs it; DVC does not rehash what it downloads
    # (the remote's `verify` is off by default), so the altered answer arrives
    checked = verify_in(second, "--pull")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"verify-pulled: DIFFERS paper_r64: {moved}: committed" in checked.stderr, checked.stderr
    assert "DIFFERS pretrained_r320" not in checked.stderr, "the other config's answers are untouched"
    assert "DIFFERS report.md" in checked.stderr
