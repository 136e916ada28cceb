"""The paper's recipe (`train.profile=paper`) through train -> evaluate -> score with
`dvc exp run`, in a temporary copy of the repository, on the bundled corpus and the tiny model.

It is the real run's code path (gradient checkpointing, accumulation of 8, the paper's
schedule, every epoch evaluated), only smaller: on the bundled corpus the recipe makes 3
optimizer steps an epoch, fewer than its logging_steps, which once left DVCLive without the
plots the stage declares. One config (paper_r64) keeps it to a few minutes on a CPU."""

import json

import pytest
import yaml
from conftest import BUNDLED, repo_copy, sh

from pronounce.scoring.paper import HEADLINE


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return repo_copy(tmp_path_factory.mktemp("paper") / "repo")


@pytest.mark.slow
def test_the_paper_recipe_runs_train_evaluate_score(repo):
    # The paper profile's parse-rate floor (score.min_parse_rate.paper, 0.95) is for the real model
    # (tests/scoring/test_score.py holds it); the tiny model's 12 steps of the paper recipe parse nothing.
    # The recipe refuses a torch without a GPU unless allowed (train.recipes.paper.allow_cpu): allowed
    # here, as a user on a CPU must; on a GPU the allowance changes nothing.
    out = sh("dvc", "exp", "run", "-S", "train.profile=paper", "-S", "score.min_parse_rate.paper=0.0",
             "-S", "train.recipes.paper.allow_cpu=true", "score@paper_r64", cwd=repo)
    for stage in ("train@paper_r64", "evaluate@paper_r64", "evaluate_base", "score@paper_r64"):
        assert f"Running stage '{stage}'" in out

    recipe = yaml.safe_load((repo / "params.yaml").read_text())["train"]["recipes"]["paper"]
    epochs = recipe["epochs"]
    model = repo / "models/paper_r64"
    assert sorted(p.name for p in model.iterdir()) == sorted(
        ["adapter", "processor", *(f"epoch-{k}" for k in range(1, epochs + 1))])

    # The logs and plots exist although no step reaches logging_steps: one row per epoch's end.
    steps = [int(row.split("\t")[0]) for row in
             (repo / "dvclive/paper_r64/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]]
    assert len(steps) >= epochs and steps == sorted(set(steps))
    assert json.loads((repo / "dvclive/paper_r64/metrics.json").read_text())["step"] == steps[-1]

    metrics = json.loads((repo / "metrics/paper_r64.json").read_text())
    assert set(HEADLINE) | {"parse_rate", "epochs", "paper", "diff"} <= set(metrics)
    assert 0 <= metrics["parse_rate"] <= 1  # what the tiny model answers is training's; the counts are not
    assert "0" in metrics["epochs"] and str(epochs) in metrics["epochs"]  # the base model, the last epoch
    assert (metrics["n_utterances"], metrics["epoch"]) == (40, epochs)
    rows = [json.loads(row) for row in (repo / "predictions/paper_r64/final.jsonl").read_text().splitlines()]
    test_ids = sorted(line.split()[0] for line in (BUNDLED / "test/wav.scp").read_text().splitlines())
    assert [(r["utt_id"], r["task"]) for r in rows] == [(u, t) for u in test_ids for t in ("apa", "mdd")]
    assert {r["epoch"] for r in rows} == {epochs}  # every answer from the final adapter
