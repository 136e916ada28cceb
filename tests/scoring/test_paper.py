"""The paper's Table 3 as shipped: its rows, which row a checkpoint stands beside, how a metric prints."""

import json

import pytest
from conftest import ROOT

from pronounce.scoring import paper as P

# ../shared beside the repository (every developer and CI run has it; a bare clone may not).
REFERENCE = ROOT.parent / "shared" / "reference" / "paper_table3.json"


def test_table_has_every_strategy_and_epoch_once_with_every_headline_metric():
    assert [(r["strategy"], r["epoch"]) for r in P.PAPER_TABLE3] == [
        ("none", 0), *((s, k) for s in ("LoRA", "Unfreeze") for k in (1, 2, 3, 4))]
    assert all(set(r) == {"strategy", "epoch", *P.HEADLINE} for r in P.PAPER_TABLE3)


def test_paper_row_and_epoch():
    assert P.paper_row("LoRA", 3) == {"accuracy_pcc": 0.656, "fluency_pcc": 0.727, "prosodic_pcc": 0.711,
                                      "total_pcc": 0.675, "wer": 0.14, "per": 0.114, "precision": 0.728,
                                      "recall": 0.721, "f1": 0.724}
    assert P.paper_row("Unfreeze", 0) == P.paper_row("LoRA", 0)  # epoch 0: the "no training" row
    assert P.paper_row("Unfreeze", 0)["wer"] == 0.97


def test_an_epoch_the_paper_lacks_gets_no_paper_row_and_the_final_the_headline():
    assert P.paper_epoch_for("LoRA", 10) == P.paper_epoch_for("LoRA", None) == P.PAPER_TARGET_EPOCH == 3
    assert P.paper_epoch_for("Unfreeze", 2) == 2 and P.paper_row("LoRA", 10) is None


def test_fmt():
    assert P.fmt(None) == "n/a"
    assert P.fmt(0.65649) == "0.656" and P.fmt(-0.0493) == "-0.049"
    assert P.fmt(0.75, 2) == "0.75"


def test_paper_table_matches_reference():
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} not found: ../shared is not beside this clone")
    ref = json.loads(REFERENCE.read_text())["table3"]
    assert ref == P.PAPER_TABLE3


def test_the_papers_small_facts_as_printed():
    """The caption's one underlined (p >= 0.05) APA value, the untrained fluency PCC; the untrained
    prosodic PCC printed with four decimals; every other value with three."""
    assert P.PAPER_NOT_SIGNIFICANT == {("none", 0, "fluency_pcc")}
    assert P.paper_fmt("none", 0, "fluency_pcc", -0.017) == "-0.017 (p ≥ 0.05)"
    assert P.paper_fmt("LoRA", 0, "prosodic_pcc", -0.0493) == "-0.0493"  # epoch 0 is the "none" row
    assert P.paper_fmt("LoRA", 1, "fluency_pcc", 0.585) == "0.585" and P.paper_fmt("LoRA", 3, "wer", 0.14) == "0.140"
    printed = [P.paper_fmt(r["strategy"], r["epoch"], k, r[k]) for r in P.PAPER_TABLE3 for k in P.HEADLINE]
    assert sum("(p ≥ 0.05)" in c for c in printed) == 1 and sum(len(c.split(".")[1]) == 4 for c in printed) == 1
    assert P.paper_fmt("none", 0, "fluency_pcc", None) == "n/a"


def test_headline_names_are_table3s_columns_in_its_order():
    assert list(P.TABLE3_NAMES) == ["accuracy_pcc", "fluency_pcc", "prosodic_pcc", "total_pcc", "wer", "per", "f1",
                                    "precision", "recall"]
    assert set(P.TABLE3_NAMES) == set(P.HEADLINE)
