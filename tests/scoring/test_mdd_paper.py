"""Paper-style MDD precision/recall/F1 (pronounce.scoring.mdd_paper) and the fit that chose its reading
(pronounce.scoring.mdd_paper_fit)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pronounce.scoring import mdd_paper_fit as fit
from pronounce.scoring import mdd_readings as readings
from pronounce.scoring import mdd_simulation as simulation
from pronounce.scoring.mdd_paper import (
    COUNT_KEYS,
    READING,
    paper_style,
    paper_style_arrays,
    paper_style_counts,
    paper_style_scores,
)
from pronounce.scoring.metrics import per
from pronounce.scoring.paper import PAPER_TABLE3

ROOT = Path(__file__).resolve().parents[2]
P, R, F = "precision_paper_style", "recall_paper_style", "f1_paper_style"


# ---------------------------------------------------------------- hand-worked cases


def test_an_early_deletion_shifts_every_later_phone():
    # DH AH K AE T said, DH K AE T recognised: index by index only DH agrees (K/AH, AE/K, T/AE);
    # an alignment would match 4. P = 1/4, R = 1/5, F1 = 2 (1/20) / (9/20) = 2/9.
    got = paper_style([("DH AH K AE T", "DH K AE T")])
    assert got["counts"] == {"hits": 1, "recognised": 4, "annotated": 5}
    assert (got[P], got[R], got[F]) == pytest.approx((0.25, 0.2, 2 / 9))
    assert got["reasons"] == {}


def test_a_late_insertion_costs_only_what_follows_it():
    # S IH T said, S IH IH T recognised: S, IH agree; T/IH do not; the extra T has no partner.
    got = paper_style([("S IH T", "S IH IH T")])
    assert got["counts"] == {"hits": 2, "recognised": 4, "annotated": 3}
    assert (got[P], got[R]) == pytest.approx((0.5, 2 / 3))


def test_a_substitution_costs_one_position():
    got = paper_style([("W IY K AO L", "W IH K AO L")])
    assert got["counts"]["hits"] == 4 and got[P] == got[R] == pytest.approx(0.8)


def test_both_sides_are_normalised_as_per_normalises_them():
    # stress digits, case, '*' and <UNK> as metrics.normalise_phones treats them; lists or strings
    got = paper_style_counts(["ih0", "T", "AH*", "<UNK>"], "IH t1 AH <unk>")
    assert got == {"hits": 4, "recognised": 4, "annotated": 4}


def test_pooled_over_utterances_not_averaged():
    # utterance 1: 2 of 2 right; utterance 2: 8 phones, nothing recognised. Pooled: P = 2/2,
    # R = 2/10 (an average of per-utterance recalls would say (1 + 0)/2 = 0.5).
    got = paper_style([("HH AY", "HH AY"), ("DH AH K AE T S AE T", "")])
    assert got["counts"] == {"hits": 2, "recognised": 2, "annotated": 10}
    assert (got[P], got[R], got[F]) == pytest.approx((1.0, 0.2, 2 * 0.2 / 1.2))
    assert got["by_utterance"] == {"hits": [2, 0], "recognised": [2, 0], "annotated": [2, 8]}


def test_undefined_values_are_none_with_a_reason():
    nothing = paper_style([("DH AH", "")])
    assert nothing[P] is None and nothing[R] == 0.0 and nothing[F] is None
    assert set(nothing["reasons"]) == {P, F}
    empty = paper_style([])
    assert empty[P] is None and empty[R] is None and set(empty["reasons"]) == {P, R, F}
    # a real 0 on both sides: F1 is 0, not undefined
    wrong = paper_style([("DH AH", "K T")])
    assert (wrong[P], wrong[R], wrong[F]) == (0.0, 0.0, 0.0) and wrong["reasons"] == {}


def test_a_failed_parse_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="replace failed parses first"):
        paper_style([("DH AH", None)])


def test_counts_are_additive_as_the_bootstrap_needs():
    """A resample weights each utterance's counts: the weighted sums through paper_style_arrays
    must give what paper_style gives on the utterances repeated that often."""
    rng = np.random.default_rng(3)
    phones = "AA AE AH B D K S T".split()
    pairs = [(" ".join(rng.choice(phones, rng.integers(1, 9))), " ".join(rng.choice(phones, rng.integers(0, 9))))
             for _ in range(12)]
    cols = paper_style(pairs)["by_utterance"]
    weights = rng.integers(0, 4, size=(5, len(pairs)))
    sums = {k: weights @ np.array(cols[k]) for k in COUNT_KEYS}
    got = paper_style_arrays(sums["hits"], sums["recognised"], sums["annotated"])
    for b, w in enumerate(weights):
        direct = paper_style([p for p, n in zip(pairs, w) for _ in range(n)])
        assert [got[k][b] for k in (P, R, F)] == pytest.approx([direct[P], direct[R], direct[F]])
    assert paper_style_scores({"hits": 0, "recognised": 0, "annotated": 0})[F] is None
    assert np.isnan(paper_style_arrays([1, 0], [0, 0], [2, 0])[P]).all()


def test_no_torch_behind_it():
    """Scoring stays light: the metric and the fit import neither torch nor transformers."""
    code = ("import sys, pronounce.scoring.mdd_paper, pronounce.scoring.mdd_paper_fit; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- the simulation


@pytest.fixture(scope="module")
def utts():
    return simulation.load(str(ROOT / "data" / "speechocean762-mini"))


def test_the_bundled_corpus_annotates_substitutions_only(utts):
    # the fact behind "the annotated mix gives P = R": 8 substitutions in 1,673 phones
    assert simulation.annotated_mix(utts) == {"substitutions": 8, "deletions": 0, "insertions": 0, "del": 0.0, "ins": 0.0}
    assert sum(len(u.annotated) for u in utts) == 1673


def test_recognise_applies_the_thresholds():
    noise = simulation.Noise(op=np.array([0.05, 0.25, 0.9]), sub=("X1", "X2", "X3"), ins_u=np.array([0.9, 0.05, 0.9, 0.05]),
                      ins=("I0", "I1", "I2", "I3"), spread=0.5)
    # d = 0.1: phone 0 deleted; s = 0.2: phone 1 replaced (0.25 < 0.3); phone 2 kept; i = 0.1: gaps 1 and 3
    assert simulation.recognise(("A", "B", "C"), noise, s=0.2, d=0.1, i=0.1) == ["I1", "X2", "C", "I3"]


def test_every_candidate_reading_on_one_hand_worked_pair():
    """DH AH K AE T said (and canonical), DH K AE T recognised: the alignment, bag, set and difflib
    all find 4 common phones (P 4/4, R 4/5); index by index only DH agrees; edit distance 1 gives
    P 3/4, R 4/5; zipped (DH,DH) (AH,K) (K,AE) (AE,T) over the labels AE AH DH K T: only DH is
    right, so sklearn's macro P = R = F1 = 1/5 and weighted (T has no support) 1/4 (sklearn 1.9.1
    agrees); the field's counting has one FR, no TR and no mispronunciation: P 0, R 0 by convention."""
    said = tuple("DH AH K AE T".split())
    u = simulation.Utterance(said, said, tuple((p, p) for p in said))
    want = {"alignment hits": (1, 0.8), "position by position": (0.25, 0.2), "multiset (bag)": (1, 0.8),
            "set of phones": (1, 0.8), "difflib matching blocks": (1, 0.8), "1 - edit distance / length": (0.75, 0.8),
            "alignment hits vs canonical": (1, 0.8), "sklearn macro, zipped positions": (0.2, 0.2, 0.2),
            "sklearn weighted, zipped positions": (0.25, 0.25, 0.25), "standard MDD (TA/FR/FA/TR)": (0, 0),
            "mispronounced positions only": (0, 0)}
    assert len(readings.READINGS) == 18
    for rd in readings.READINGS:
        base = rd.name.removesuffix(", pooled").removesuffix(", per utterance")
        got = rd.score([(u, "DH K AE T".split())])
        assert got[:len(want[base])] == pytest.approx(want[base]), rd.name


def test_noise_replaces_with_another_phone_and_spreads_as_asked(utts):
    noises = simulation.draw_noise(utts, 8, 3)
    assert all(s != a for rep in noises for u, n in zip(utts, rep) for s, a in zip(n.sub, u.annotated))
    assert all(len(n.ins) == len(n.ins_u) == len(u.annotated) + 1 for rep in noises for u, n in zip(utts, rep))
    assert all((m == 1).all() for m in simulation.multipliers(noises, 0.0))
    # cv 1 (Gamma of shape 1): mean 1, SD 1; 856 utterances, so sample error ~0.03 on the mean
    m = np.concatenate(simulation.multipliers(noises, 1.0))
    assert abs(m.mean() - 1) < 0.1 and abs(m.std() - 1) < 0.15
    spread = np.array([n.spread for rep in noises for n in rep])
    assert (np.diff(m[np.argsort(spread)]) >= 0).all()  # a quantile of the utterance's own uniform


def _fitted(row: int) -> tuple:
    """The mix the fit chose for a row of Table 3 (one per model)."""
    strategy = PAPER_TABLE3[row]["strategy"]
    return fit.FITTED["untrained" if strategy == "none" else strategy]


@pytest.mark.parametrize("row, mix", [(0, _fitted(0)), (3, _fitted(3)), (3, (0.0, 0.0, 0.0))])
def test_simulate_hits_the_rows_per(utts, row, mix):
    pairs, got = simulation.simulate(utts, simulation.draw_noise(utts, 1, 7), PAPER_TABLE3[row]["per"], mix)
    assert abs(got - PAPER_TABLE3[row]["per"]) <= simulation.PER_TOL
    assert per([u.annotated for u, _ in pairs], [r for _, r in pairs])["value"] == pytest.approx(got)


@pytest.mark.parametrize("row", range(len(PAPER_TABLE3)))
def test_the_chosen_reading_reproduces_table3(utts, row):
    """On a small seeded simulation (8 replicates of the bundled corpus, not the fit's draws) at the
    fitted mixes, pronounce.scoring.mdd_paper gives each row's shape: P >= R and P - R within SHAPE_TOL of
    the paper's; and P, R, F1 within the fit's tolerance plus three simulation SDs (0.008 each at 8
    replicates, measured across seeds): an aligned count misses by 0.16 or more."""
    paper = PAPER_TABLE3[row]
    pairs, _ = simulation.simulate(utts, simulation.draw_noise(utts, 8, 11), paper["per"], _fitted(row))
    got = paper_style([(u.annotated, r) for u, r in pairs])
    for ours, theirs in ((P, "precision"), (R, "recall"), (F, "f1")):
        assert abs(got[ours] - paper[theirs]) <= fit.VALUE_TOL + 3 * 0.008, (ours, got[ours], paper[theirs])
    assert got[P] >= got[R]
    assert abs((got[P] - got[R]) - (paper["precision"] - paper["recall"])) <= fit.SHAPE_TOL


def test_an_alignment_count_cannot_reach_table3(utts):
    """The reason the aligned readings lose: their recall is at least 1 - PER, and Table 3's is far below."""
    paper = PAPER_TABLE3[3]
    pairs, got_per = simulation.simulate(utts, simulation.draw_noise(utts, 2, 11), paper["per"], _fitted(3))
    aligned = next(rd for rd in readings.READINGS if rd.name == "alignment hits, pooled").score(pairs)
    assert aligned[1] >= 1 - got_per - 1e-12
    assert aligned[1] - paper["recall"] > 0.1  # 1 - PER - R is 0.165 in this row of Table 3


def test_the_fit_chooses_a_position_by_position_reading(utts):
    """The fit's machinery on a few mixes (the annotated one and the fitted ones), one replicate:
    a position-by-position reading wins; the aligned and bag readings miss every row by far."""
    mixes = sorted({(0.0, 0.0, 0.0), *fit.FITTED.values()})
    result = fit.fit(utts, seed=5, search_reps=1, reps=1, mixes=mixes)
    name, _ = fit.chosen_reading(result)
    assert name.startswith("position by position")
    for far in ("alignment hits, pooled", "multiset (bag), pooled", "standard MDD (TA/FR/FA/TR)"):
        assert fit.worst(result["results"][fit.JUDGED][far])["deviation"] > 3
    # the annotated mix (substitutions only) gives P = R exactly for every count of hits over lengths
    for r in result["at_corpus_mix"]["position by position, pooled"]:
        assert r["precision"] == pytest.approx(r["recall"])
    text = fit.markdown(result, "corpus")
    assert f"**Chosen: {name}**" in text or f"the closest: {name}.**" in text


def test_the_fit_command_writes_the_table(tmp_path, monkeypatch):
    """The command end to end on a two-point grid and one replicate (the shipped table used the defaults)."""
    monkeypatch.setattr(fit, "GRID", {"step": 0.3, "top_del": 0.3, "top_ins": 0.0, "cvs": (0.0,)})
    out = tmp_path / "fit.md"
    assert fit.main(["--search-reps", "1", "--reps", "1", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert ("**Chosen: " in text) != ("**No reading fits" in text)  # one verdict line, either way
    assert "on fresh draws of seeds 2, 3, 4 (the same mixes)" in text


def test_the_shipped_fit_table_names_the_shipped_reading_and_mixes():
    text = (ROOT / "docs" / "mdd-paper-fit.md").read_text(encoding="utf-8")
    assert f"**Chosen: {READING}**: it fits on every draw." in text
    row = next(line for line in text.splitlines() if line.startswith(f"| {READING} |"))
    mixes = "; ".join(fit._mix(fit.FITTED[g]) for g in ("untrained", "LoRA", "Unfreeze"))
    assert row.startswith(f"| {READING} | {mixes} |")
    assert READING in {rd.name for rd in readings.READINGS}


def test_the_fit_command_refuses_a_missing_corpus_in_one_line(tmp_path, capsys):
    assert fit.main(["--corpus", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "does not exist" in err and "\n" not in err
