"""The README's real-run recipe, verbatim, end to end: the block between its `real-run-recipe`
markers runs in bash, in a copy of the repository, against a Hugging Face cache that stands in for
the Hub (tests/hf_cache.py: the tiny model of `builtin:tiny` under the real model's id, native on
refs/pr/70 and remote-code on main; the bundled corpus as the dataset repo's parquet files), with
HF_HUB_OFFLINE=1 and the Hub's address unreachable. Every config is trained with the paper's
recipe, evaluated at every epoch and scored, the report written, and the commits recorded.

What the test changes, and why (params.yaml of the copy, nothing in the block):
- train.recipes.paper.allow_cpu: true: this machine has no GPU, and the paper recipe refuses a
  torch without CUDA (the real run's safeguard);
- score.min_parse_rate.paper: 0.0: the paper profile's 0.95 floor is for the real model; the tiny
  model's 12 steps of the paper recipe parse little;
- eval.max_new_tokens: 24: the tiny model's answers run to the limit; 160 tokens at 13 checkpoints
  would be most of the test's time, and nothing here depends on long answers;
- train.recipes.paper.cpu_threads: 1: the tiny model's matrices are too small to split across
  threads (the smoke recipe's own setting; measured 2.6x faster on 2 cores).
The paper recipe on the bundled corpus makes 3 optimizer steps an epoch, fewer than its
logging_steps, so DVCLive's logs and plots must still exist (one row per epoch's end)."""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from conftest import BUNDLED, ROOT, repo_copy
from hf_cache import DATASET_ID, MODEL_ID, build_cache

from pronounce.scoring.paper import HEADLINE

MARKERS = ("<!-- --8<-- [start:real-run-recipe] -->", "<!-- --8<-- [end:real-run-recipe] -->")


def readme_recipe() -> str:
    """The bash of the README's real-run block, exactly as a user copies it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index(MARKERS[0]) + len(MARKERS[0]):text.index(MARKERS[1])]
    code = re.fullmatch(r"\s*```bash\n(.*?)```\s*", block, flags=re.S)
    assert code, "the README's real-run block is one ```bash block"
    return code.group(1)


def edit(params):
    params["train"]["recipes"]["paper"]["allow_cpu"] = True
    params["score"]["min_parse_rate"]["paper"] = 0.0
    params["eval"]["max_new_tokens"] = 24
    params["train"]["recipes"]["paper"]["cpu_threads"] = 1


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-run")
    commits = build_cache(root / "hf")
    repo = repo_copy(root / "repo", edit_params=edit)
    env = {**os.environ, "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9",
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_recipe()], cwd=repo, env=env,
                          capture_output=True, text=True)
    return repo, commits, done


def test_the_recipe_is_the_commands_a_user_types():
    recipe = readme_recipe()
    assert f"hf download {MODEL_ID} --revision refs/pr/70" in recipe
    assert f"hf download --repo-type dataset {DATASET_ID}" in recipe
    assert "export HF_HUB_OFFLINE=1" in recipe
    assert "python -m pronounce.checks.preflight" in recipe and "dvc exp run" in recipe


@pytest.mark.slow
def test_the_readme_recipe_runs_offline_to_a_scored_report(run):
    repo, commits, done = run
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    configs = list(yaml.safe_load((repo / "params.yaml").read_text())["configs"])
    assert len(configs) == 3
    for config in configs:
        for stage in ("train", "evaluate", "score"):
            assert f"Running stage '{stage}@{config}'" in out
        metrics = json.loads((repo / "metrics" / f"{config}.json").read_text())
        assert set(HEADLINE) - {"precision", "recall", "f1"} <= set(metrics)
        assert sorted(metrics["epochs"], key=int) == ["0", "1", "2", "3", "4"]  # the base model, every epoch
        assert json.loads((repo / "metrics" / config / "headline.json").read_text())["epoch"] == 4
    assert "Running stage 'report'" in out and (repo / "metrics" / "report.md").is_file()
    assert "preflight" in out.lower()


@pytest.mark.slow
def test_the_commits_it_used_are_recorded(run):
    repo, commits, done = run
    assert done.returncode == 0
    assert json.loads((repo / "models/base/base.json").read_text())["commit"] == commits["model_pr70"]
    pin = json.loads((repo / "data/corpus.json").read_text())
    assert (pin["kind"], pin["id"], pin["commit"]) == ("hf", DATASET_ID, commits["dataset"])
    assert commits["dataset"] in (repo / "dvc.lock").read_text()  # decode's params: the pin


@pytest.mark.slow
def test_the_paper_recipe_trains_every_epoch_and_logs_short_epochs(run):
    repo, _, done = run
    assert done.returncode == 0
    epochs = yaml.safe_load((repo / "params.yaml").read_text())["train"]["recipes"]["paper"]["epochs"]
    model = repo / "models/paper_r64"
    assert {"adapter", "processor", *(f"epoch-{k}" for k in range(1, epochs + 1))} <= {p.name for p in model.iterdir()}
    # The logs and plots exist although no step reaches logging_steps: one row per epoch's end.
    steps = [int(row.split("\t")[0]) for row in
             (repo / "dvclive/paper_r64/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]]
    assert len(steps) >= epochs and steps == sorted(set(steps))
    rows = [json.loads(row) for row in (repo / "predictions/paper_r64/final.jsonl").read_text().splitlines()]
    test_ids = sorted(line.split()[0] for line in (BUNDLED / "test/wav.scp").read_text().splitlines())
    assert [(r["utt_id"], r["task"]) for r in rows] == [(u, t) for u in test_ids for t in ("apa", "mdd")]
    assert {r["epoch"] for r in rows} == {epochs}  # every answer from the final adapter
