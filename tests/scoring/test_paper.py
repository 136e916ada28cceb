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


def test_table3s_precision_recall_f1_are_judged_against_the_paper_style_metrics():
    """The paper's MDD numbers are judged against the paper-style reconstruction; every other number
    against its namesake; the standard precision/recall/F1 against nothing."""
    from pronounce.scoring.mdd_paper import NAMES, READING

    assert P.JUDGED_BY == {**{k: k for k in P.HEADLINE}, "precision": "precision_paper_style",
                           "recall": "recall_paper_style", "f1": "f1_paper_style"}
    assert set(P.JUDGED_BY.values()) & {"precision", "recall", "f1"} == set() and set(NAMES) <= set(P.JUDGED)
    assert P.HEADLINE_NAMES["precision"] == "precision_paper_style" and P.HEADLINE_NAMES["wer"] == "wer"
    assert P.judged_label("f1") == "f1 (paper-style)" and P.judged_label("per") == "per"
    assert READING in P.PAPER_STYLE_NOTE and "reconstructed from Table 3, see docs/mdd-paper-fit.md" in P.PAPER_STYLE_NOTE
    assert (ROOT / "docs" / "mdd-paper-fit.md").is_file()  # the docs the labels point at


def test_the_fields_published_mdd_results_are_context_with_their_sources():
    """MuFFIN and HMamba on speechocean762 (standard counting, canonical phones given): F1 only, each
    with its paper's title and arXiv id, and which of it was checked."""
    rows = {r["system"]: r for r in P.MDD_CONTEXT}
    assert {k: r["f1"] for k, r in rows.items()} == {"MuFFIN": 0.680, "HMamba": 0.639}
    assert "arXiv:2510.04956" in rows["MuFFIN"]["source"] and "MuFFIN: Multifaceted" in rows["MuFFIN"]["source"]
    assert "arXiv:2502.07575" in rows["HMamba"]["source"] and "63.85%" in rows["HMamba"]["checked"]
    assert all(r["precision"] is None and r["recall"] is None for r in rows.values())
