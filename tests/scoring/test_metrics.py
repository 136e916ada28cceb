import math
import random

import jiwer
import numpy as np
import pytest
from rapidfuzz.distance import Levenshtein
from scipy import stats

from pronounce.scoring.metrics import (
    Step,
    align,
    mdd_columns,
    mdd_counts,
    mdd_scores,
    mdd_worst_case,
    normalise_words,
    pcc,
    penalise_insertions,
    per,
    per_by_utterance,
    sum_counts,
    wer,
    wer_by_utterance,
)

# ---------------------------------------------------------------- PCC


def test_pcc_matches_scipy():
    rng = np.random.default_rng(0)
    human = rng.integers(0, 11, 50)
    pred = human + rng.normal(0, 2, 50)
    got = pcc(pred.tolist(), human.tolist())
    ref = stats.pearsonr(pred, human)
    assert got["value"] == pytest.approx(ref.statistic) and got["p_value"] == pytest.approx(ref.pvalue)
    assert (got["n"], got["n_dropped"], got["reason"]) == (50, 0, None)


def test_pcc_hand_computed():
    # x = 1,2,3, y = 1,3,2: deviations (-1,0,1) and (-1,1,0): r = 1 / (sqrt 2 * sqrt 2) = 0.5
    assert pcc([1, 2, 3], [1, 3, 2])["value"] == pytest.approx(0.5)


def test_pcc_undefined_is_none_with_reason():
    for pred, human, why in [([5, 5, 5], [1, 2, 3], "predictions are constant"),
                             ([1, 2, 3], [7, 7, 7], "human scores are constant"),
                             ([1], [2], "fewer than 2 pairs"), ([], [], "fewer than 2 pairs")]:
        got = pcc(pred, human)
        assert got["value"] is None and got["p_value"] is None and got["reason"].startswith(why)
        assert got["n"] == len(pred)


def test_pcc_drops_missing_pairs_and_counts_them():
    got = pcc([1, None, 3, float("nan"), 2], [1, 5, 2, 4, 3])
    assert (got["n"], got["n_dropped"]) == (3, 2)
    assert got["value"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"^pcc: 2 predictions but 3 human scores$"):
        pcc([1, 2], [1, 2, 3])


# ---------------------------------------------------------------- WER / PER


def test_normalise_words():
    assert normalise_words("That's an interesting, well-known 'observation'.") == [
        "THAT'S", "AN", "INTERESTING", "WELL", "KNOWN", "OBSERVATION"]
    assert normalise_words("It\u2019s OK!") == ["IT'S", "OK"]
    assert normalise_words(" ... ") == []


def test_wer_hand_computed_and_corpus_level():
    # utt 1: 4 ref words, "a" inserted -> 1 error; utt 2: 1 ref word, substituted -> 1 error.
    # Corpus (1 + 1) / (4 + 1) = 0.4, not the mean of per-utterance rates (0.25 + 1) / 2.
    got = wer(["WE CALL IT BEAR", "YES"], ["we call it a bear.", "no"])
    assert got["value"] == pytest.approx(0.4)
    assert (got["substitutions"], got["deletions"], got["insertions"], got["ref_length"], got["n"]) == (1, 0, 1, 5, 2)


def test_wer_cross_checked_with_jiwer():
    refs = ["MARK IS GOING TO SEE ELEPHANT", "IT'S A NICE DAY", "I LIKE APPLES"]
    hyps = ["Mark is going to see an elephant.", "its a nice day", ""]
    expected = jiwer.wer(
        [" ".join(normalise_words(r)) for r in refs], [" ".join(normalise_words(h)) or "" for h in hyps]
    )
    assert wer(refs, hyps)["value"] == pytest.approx(expected)
    assert wer(refs, hyps)["value"] == pytest.approx((1 + 1 + 3) / 13)  # 1 ins, 1 sub, 3 del over 13 words


def test_wer_edge_cases():
    assert wer([""], ["hello"])["value"] is None and wer([""], ["hello"])["insertions"] == 1
    assert wer([], [])["reason"] == "no reference tokens"
    with pytest.raises(ValueError, match="a hypothesis is None; filter or replace failed parses first"):
        wer(["A"], [None])
    with pytest.raises(ValueError, match=r"^wer: 1 references but 0 hypotheses$"):
        wer(["A"], [])


def test_per_hand_computed_and_normalised():
    # K AE T -> K AH T S: 1 substitution + 1 insertion over 3; second: 1 deletion over 2.
    got = per(["K AE1 T", ["s", "t"]], [["K", "AH0", "T", "S"], "S"])
    assert got["value"] == pytest.approx(3 / 5)
    assert (got["substitutions"], got["deletions"], got["insertions"]) == (1, 1, 1)


def test_per_cross_checked_with_jiwer():
    refs = ["DH AH K AE T", "W IY K AO L IH T B EH R", "S T"]
    hyps = ["DH AH K AH T S", "W IY K AO L B EH R", "Z D"]
    expected = jiwer.wer(refs, hyps)  # jiwer's word rate over space-separated phones is PER
    assert per(refs, hyps)["value"] == pytest.approx(expected)


# ---------------------------------------------------------------- alignment


def _ops(a, b):
    return [(s.op, s.i, s.j) for s in align(a.split(), b.split())]


def test_align_basic_and_empty():
    assert _ops("K AE T", "K AH T S") == [("equal", 0, 0), ("replace", 1, 1), ("equal", 2, 2), ("insert", None, 3)]
    assert align([], []) == []
    assert align(["A"], []) == [Step("delete", 0, None)]
    assert align([], ["A"]) == [Step("insert", None, 0)]
    assert align(["<unk>", "AA"], ["<unk>", "AA"]) == [Step("equal", 0, 0), Step("equal", 1, 1)]


def test_align_pinned_ties():
    # Kaldi's align-text (metrics.py): backtrace from the end, diagonal first, then deletion,
    # then insertion. Each case below is one where rapidfuzz's editops (the old rule) differ,
    # worked by hand on the table e[i][j]:
    # "X Y" -> "Z": at (2,1) diagonal e[1][0]+1 = 2, deletion e[1][1]+1 = 2, insertion 3:
    # the diagonal (Y->Z), then X deleted. rapidfuzz: X->Z, Y deleted.
    assert _ops("X Y", "Z") == [("delete", 0, None), ("replace", 1, 0)]
    # "A A" -> "A": at (2,1) the diagonal is a match (e[1][0]+0 = 1): the second A matched.
    assert _ops("A A", "A") == [("delete", 0, None), ("equal", 1, 0)]
    assert _ops("A", "A A") == [("insert", None, 0), ("equal", 0, 1)]
    # "A B" -> "B A": at (2,2) diagonal e[1][1]+1 = 2 (e[1][1] = 1), deletion e[1][2]+1 = 2,
    # insertion e[2][1]+1 = 2: the diagonal wins twice, two substitutions; rapidfuzz inserts B,
    # matches A and deletes B.
    assert _ops("A B", "B A") == [("replace", 0, 0), ("replace", 1, 1)]
    # where the rules agree
    assert _ops("A", "B C") == [("insert", None, 0), ("replace", 0, 1)]
    assert _ops("S T", "T") == [("delete", 0, None), ("equal", 1, 0)]


def _kaldi_by_enumeration(a, b):
    """The rule stated as a search, independent of align's dynamic programme: of ALL alignments
    of a and b, keep the cheapest; read each from its end, and take the one whose op sequence
    is first in the order diagonal < deletion < insertion (a backtrace that always takes the
    highest-ranked step still on a cheapest path picks exactly that one)."""
    rank = {"equal": 0, "replace": 0, "delete": 1, "insert": 2}

    def paths(i, j):  # every alignment of a[:i], b[:j], as a list of Steps (forward order)
        if i == 0 and j == 0:
            yield []
            return
        if i and j:
            for p in paths(i - 1, j - 1):
                yield p + [Step("equal" if a[i - 1] == b[j - 1] else "replace", i - 1, j - 1)]
        if i:
            for p in paths(i - 1, j):
                yield p + [Step("delete", i - 1, None)]
        if j:
            for p in paths(i, j - 1):
                yield p + [Step("insert", None, j - 1)]

    every = list(paths(len(a), len(b)))
    cost = min(sum(s.op != "equal" for s in p) for p in every)
    cheapest = [p for p in every if sum(s.op != "equal" for s in p) == cost]
    return min(cheapest, key=lambda p: [rank[s.op] for s in reversed(p)])


def test_align_is_kaldis_rule_by_enumeration():
    rng = random.Random(0)
    for _ in range(400):
        a = [rng.choice(["AA", "B", "<unk>"]) for _ in range(rng.randint(0, 5))]
        b = [rng.choice(["AA", "B", "<unk>"]) for _ in range(rng.randint(0, 5))]
        assert align(a, b) == _kaldi_by_enumeration(a, b), (a, b)


def test_align_distance_is_the_levenshtein_distance():
    """Only the ties moved: the number of edits (hence WER and PER) is rapidfuzz's distance."""
    rng = random.Random(1)
    differ = 0
    for _ in range(500):
        a = [rng.choice("ABCDE") for _ in range(rng.randint(0, 40))]
        b = [t for t in a if rng.random() > 0.15] + [rng.choice("ABCDE") for _ in range(rng.randint(0, 4))]
        rng.shuffle(b) if rng.random() < 0.2 else None
        steps = align(a, b)
        assert sum(s.op != "equal" for s in steps) == Levenshtein.distance(a, b)
        assert [s.i for s in steps if s.i is not None] == list(range(len(a)))
        assert [s.j for s in steps if s.j is not None] == list(range(len(b)))
        assert all(a[s.i] == b[s.j] for s in steps if s.op == "equal")
        differ += [(s.op, s.i, s.j) for s in steps] != _rapidfuzz_ops(a, b)
    assert differ > 50  # the two rules really differ on noisy sequences (the reason for this one)


def _rapidfuzz_ops(a, b):
    """The old rule (rapidfuzz's editops with the matches filled in), for comparison only."""
    out, i, j = [], 0, 0
    for op in Levenshtein.editops(a, b):
        while i < op.src_pos and j < op.dest_pos:
            out.append(("equal", i, j))
            i, j = i + 1, j + 1
        if op.tag == "replace":
            out.append(("replace", i, j))
            i, j = i + 1, j + 1
        elif op.tag == "delete":
            out.append(("delete", i, None))
            i += 1
        else:
            out.append(("insert", None, j))
            j += 1
    while i < len(a):
        out.append(("equal", i, j))
        i, j = i + 1, j + 1
    return out


# ---------------------------------------------------------------- MDD counting
# The standard of ../shared/reference/mdd_scoring.md. A pairing is written one column per
# token: "X" said correctly, "X>Y" substituted by Y, "X>-" deleted, "->Y" Y inserted.
# These expectations replace the old convention's (deleted phones judged on the
# annotated<->recognised alignment, model insertions counted as FR): see mdd_scoring.md.


def _pairs(text):
    out = []
    for tok in text.split():
        c, _, a = tok.partition(">") if ">" in tok else (tok, "", tok)
        out.append((None if c == "-" else c, None if a == "-" else a))
    return out


def _counts(pairs, recognised):
    got = mdd_counts(_pairs(pairs), recognised)
    return tuple(got[k] for k in ("ta", "fr", "fa", "tr", "tr_correct", "tr_error", "model_insertions"))


def test_pairing_notation():
    assert _pairs("K AE>AH T>- ->S") == [("K", "K"), ("AE", "AH"), ("T", None), (None, "S")]


def test_worked_case_of_the_reference():
    # mdd_scoring.md: AW->AH substituted, K deleted; the model says AW and K and drops AA.
    pairs = "AY L AH V AW>AH AH K>- AA"
    cols = mdd_columns(_pairs(pairs), "AY L AH V AW AH K")
    assert [(c.canonical, c.annotated, c.recognised, c.outcome) for c in cols] == [
        ("AY", "AY", "AY", "TA"), ("L", "L", "L", "TA"), ("AH", "AH", "AH", "TA"), ("V", "V", "V", "TA"),
        ("AW", "AH", "AW", "FA"),  # annotated AH <-> recognised AW: the model said the canonical phone
        ("AH", "AH", "AH", "TA"),
        ("K", None, "K", "FA"),    # deleted: judged on canonical<->recognised, where K meets K
        ("AA", "AA", "K", "FR"),   # annotated AA <-> recognised K
    ]
    assert _counts(pairs, "AY L AH V AW AH K") == (5, 1, 2, 0, 0, 0, 0)


@pytest.mark.parametrize("pairs, recognised, model, outcome", [
    # human C (said correctly)
    ("K AE T", "K AE T", "AE", "TA"),
    ("K AE T", "K AH T", "AH", "FR"),          # another phone
    ("K AE T", "K T", None, "FR"),             # nothing
    # human S (AE said as AH), judged on annotated<->recognised
    ("K AE>AH T", "K AH T", "AH", "TR_correct"),
    ("K AE>AH T", "K AE T", "AE", "FA"),       # the canonical phone: missed
    ("K AE>AH T", "K IH T", "IH", "TR_error"),  # another phone
    ("K AE>AH T", "K T", None, "TR_error"),    # nothing
    # human D (AE deleted), judged on canonical<->recognised
    ("K AE>- T", "K T", None, "TR_correct"),   # the model deleted it too
    ("K AE>- T", "K AE T", "AE", "FA"),
    ("K AE>- T", "K IH T", "IH", "TR_error"),
    # human I (AH inserted between S and T), judged on annotated<->recognised
    ("S ->AH T", "S AH T", "AH", "TR_correct"),
    ("S ->AH T", "S T", None, "FA"),
    ("S ->AH T", "S IH T", "IH", "TR_error"),
])
def test_every_row_of_the_table(pairs, recognised, model, outcome):
    cols = mdd_columns(_pairs(pairs), recognised)
    assert [(c.outcome, c.recognised) for c in cols] == [("TA", cols[0].canonical), (outcome, model), ("TA", "T")]
    assert mdd_counts(_pairs(pairs), recognised)["model_insertions"] == 0


@pytest.mark.parametrize("recognised, expected", [
    # canonical K AE T B, annotated K AH B (AE -> AH, T deleted)
    # The annotation itself: AH diagnosed; but T is judged on canonical K AE T B <-> K AH B, whose
    # Kaldi tie (at T/AH the diagonal beats the deletion) deletes AE and puts AH on T: a wrong
    # diagnosis, as the standard's independent alignments give (rapidfuzz's tie said correct).
    ("K AH B", (2, 0, 0, 2, 1, 1, 0)),
    ("K AH T B", (2, 0, 1, 1, 1, 0, 0)),     # AH diagnosed, T missed (judged on canonical<->recognised)
    ("K AE B", (2, 0, 1, 1, 1, 0, 0)),       # AE missed, T deleted by the model too
    # The canonical transcript: T missed (FA); but AH is judged on annotated K AH B <-> K AE T B,
    # whose tie inserts AE and puts T on AH: a wrong diagnosis plus an uncounted model
    # insertion, as the standard's independent alignments give.
    ("K AE T B", (2, 0, 1, 1, 0, 1, 1)),
    # Both rejected, both wrongly diagnosed; AH <-> D by the same tie (IH inserted, uncounted).
    ("K IH D B", (2, 0, 0, 2, 0, 2, 1)),
])
def test_deletion_next_to_a_substitution(recognised, expected):
    assert _counts("K AE>AH T>- B", recognised) == expected


def test_substitution_after_a_deletion():
    # canonical S T AA P, annotated S AH P (T deleted, AA -> AH); the model says S T AH P:
    # T is FA on canonical<->recognised, AH a correct diagnosis on annotated<->recognised.
    assert _counts("S T>- AA>AH P", "S T AH P") == (2, 0, 1, 1, 1, 0, 0)


def test_model_insertions_are_not_counted():
    assert _counts("K AE T", "K AE T S") == (3, 0, 0, 0, 0, 0, 1)
    assert _counts("K AE T", "S K AE Z T S") == (3, 0, 0, 0, 0, 0, 3)
    assert _counts("K AE>AH T", "K AH T S") == (2, 0, 0, 1, 1, 0, 1)
    # the model's AE where the annotation deleted it is the deleted phone's FA, not an insertion too
    assert _counts("K AE>- T", "K AE T") == (2, 0, 1, 0, 0, 0, 0)
    assert _counts("K AE>- T", "K AE T S") == (2, 0, 1, 0, 0, 0, 1)


def test_model_deletions_and_substitutions_of_correct_phones_are_false_rejections():
    assert _counts("K AE T", "K AE") == (2, 1, 0, 0, 0, 0, 0)
    assert _counts("K AE T", "") == (0, 3, 0, 0, 0, 0, 0)
    assert _counts("K AE T", "G AE D") == (1, 2, 0, 0, 0, 0, 0)


def test_pairing_from_the_annotation_not_from_an_aligner():
    # AW AH K heard as AH AH: the annotation says AW -> AH and K deleted; Kaldi's tie (the
    # diagonal first, from the end) pairs it as AW deleted and K -> AH. The model says AH AH.
    exact = _pairs("AW>AH AH K>-")
    aligner = [(None if s.i is None else "AW AH K".split()[s.i], None if s.j is None else "AH AH".split()[s.j])
               for s in align("AW AH K".split(), "AH AH".split())]
    assert aligner == [("AW", None), ("AH", "AH"), ("K", "AH")]
    # exact: AW -> AH said as AH: TR correct; AH TA; K deleted, judged on canonical AW AH K <->
    # AH AH, whose tie puts the second AH on K: a wrong diagnosis
    assert [c.outcome for c in mdd_columns(exact, "AH AH")] == ["TR_correct", "TA", "TR_error"]
    assert _counts("AW>AH AH K>-", "AH AH") == (1, 0, 0, 2, 1, 1, 0)
    # the aligner's pairing would make both diagnoses correct
    got = mdd_counts(aligner, "AH AH")
    assert (got["tr_correct"], got["tr_error"]) == (2, 0)


def test_deleted_phone_in_a_run_of_equal_phones_is_judged_on_its_own_alignment():
    # The standard's own quirk, kept: canonical AH AH <-> recognised AH aligns the recognised AH
    # to the SECOND (Kaldi's tie: from the end, the diagonal first), so when the annotation
    # deletes the second AH even a transcript equal to the annotation counts that deletion as FA.
    assert [c.outcome for c in mdd_columns(_pairs("AH>- AH"), "AH")] == ["TR_correct", "TA"]
    assert [c.outcome for c in mdd_columns(_pairs("AH AH>-"), "AH")] == ["TA", "FA"]


@pytest.mark.parametrize("recognised, outcome", [
    ("K <unk> T", "TR_correct"),   # <unk> is an ordinary token: it equals only <unk>
    ("K <UNK> T", "TR_correct"),   # spelled <unk> whatever its case
    ("K AE T", "FA"),
    ("K AH T", "TR_error"),
])
def test_unk_in_the_annotation(recognised, outcome):
    assert mdd_columns(_pairs("K AE><unk> T"), recognised)[1].outcome == outcome


def test_unk_from_the_model_on_a_correct_phone_is_a_false_rejection():
    assert _counts("K AE T", "K <unk> T") == (2, 1, 0, 0, 0, 0, 0)


def test_sequences_are_normalised_alike():
    assert mdd_counts([("K", "k"), ("AE1", "ae0"), ("T", "t*")], ["K", "AE2", "T"])["ta"] == 3


def test_sentence_with_everything():
    pairs = "W IY K AO L>- IH T>D B EH>AE R"  # L deleted, T -> D, EH -> AE
    # the model says L (FA), D (TR correct), EH (FA), and inserts Z (not counted)
    assert _counts(pairs, "W IY K AO L IH D B EH R Z") == (7, 0, 2, 1, 1, 0, 1)


def test_counts_cover_every_column_once():
    rng = random.Random(1)
    phones = ["AA", "B", "K", "<unk>"]
    for _ in range(2000):
        pairs = []
        for _ in range(rng.randint(0, 8)):
            kind = rng.choice("CCCSDI")
            c, a = rng.choice(phones), rng.choice(phones)
            pairs.append({"C": (c, c), "S": (c, a), "D": (c, None), "I": (None, a)}[kind])
        recognised = [rng.choice(phones) for _ in range(rng.randint(0, 10))]
        got = mdd_counts(pairs, recognised)
        assert got["ta"] + got["fr"] + got["fa"] + got["tr"] == len(pairs)
        assert got["tr"] == got["tr_correct"] + got["tr_error"] and 0 <= got["model_insertions"] <= len(recognised)
        annotated = [a for _, a in pairs if a is not None]
        if all(c is not None for c, _ in pairs):  # no human insertion: the transcript of the annotation
            said = mdd_counts(pairs, annotated)   # never false-rejects and never inserts
            assert said["fr"] == 0 and said["model_insertions"] == 0


def test_a_column_with_nothing_on_either_side_is_an_error():
    with pytest.raises(ValueError, match="neither a canonical nor an annotated phone"):
        mdd_counts([("K", "K"), (None, None)], "K")


def test_worst_case_and_the_insertion_penalised_variant():
    assert mdd_worst_case(_pairs("K AE>AH T>- ->S B")) == {
        "ta": 0, "fr": 2, "fa": 3, "tr": 0, "tr_correct": 0, "tr_error": 0, "model_insertions": 0}
    counts = mdd_counts(_pairs("K AE T"), "K AE T S Z")
    assert penalise_insertions(counts) == {**counts, "fr": 2, "model_insertions": 0}
    assert mdd_scores(counts)["false_rejection_rate"] == 0.0
    assert mdd_scores(penalise_insertions(counts))["false_rejection_rate"] == pytest.approx(2 / 5)


def test_scores_hand_computed():
    counts = {"ta": 80, "fr": 5, "fa": 5, "tr": 10, "tr_correct": 6, "tr_error": 4}
    got = mdd_scores(counts)
    assert got["precision"] == pytest.approx(10 / 15) and got["recall"] == pytest.approx(10 / 15)
    assert got["f1"] == pytest.approx(10 / 15)
    assert got["diagnosis_accuracy"] == pytest.approx(0.6)
    assert got["false_rejection_rate"] == pytest.approx(5 / 85)
    assert got["reasons"] == {}


def test_scores_zero_denominators():
    got = mdd_scores(dict.fromkeys(("ta", "fr", "fa", "tr", "tr_correct", "tr_error"), 0))
    assert all(got[k] is None for k in ("precision", "recall", "f1", "diagnosis_accuracy", "false_rejection_rate"))
    assert set(got["reasons"]) == {"precision", "recall", "f1", "diagnosis_accuracy", "false_rejection_rate"}
    # A perfect transcriber of a perfect speaker: nothing to detect, recall undefined, FRR 0.
    got = mdd_scores(mdd_counts(_pairs("K AE T"), "K AE T"))
    assert got["recall"] is None and got["precision"] is None and got["false_rejection_rate"] == 0.0


def test_f1_is_zero_when_precision_and_recall_are_zero():
    got = mdd_scores({"ta": 1, "fr": 2, "fa": 3, "tr": 0, "tr_correct": 0, "tr_error": 0})
    assert (got["precision"], got["recall"], got["f1"]) == (0.0, 0.0, 0.0)
    assert got["diagnosis_accuracy"] is None and "diagnosis_accuracy" in got["reasons"]


def test_corpus_level_sums_counts():
    # Under the standard S T's extra S is not an FR (it was under the old convention).
    utts = [("K AE>AH T", "K AH T"), ("S T", "S T S"), ("K AE T>-", "K AE T"), ("K AE T", "K AE")]
    total = sum_counts(mdd_counts(_pairs(p), r) for p, r in utts)
    assert total == {"ta": 8, "fr": 1, "fa": 1, "tr": 1, "tr_correct": 1, "tr_error": 0, "model_insertions": 1}
    got = mdd_scores(total)
    assert got["precision"] == pytest.approx(0.5) and got["recall"] == pytest.approx(0.5)
    assert not math.isnan(got["f1"])


def test_per_utterance_counts_sum_to_the_corpus_rates():
    """The bootstrap's per-utterance statistics are the corpus rates' numerators and denominators."""
    rng = random.Random(2)
    words = ["WE", "CALL", "IT", "BEAR", "THAT'S", "WELL"]
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 6))) for _ in range(40)]
    hyps = [" ".join(w for w in r.split() if rng.random() > 0.2) + rng.choice(["", " IT", " X Y"]) for r in refs]
    by_utt, total = wer_by_utterance(refs, hyps), wer(refs, hyps)
    assert (sum(e for e, _ in by_utt), sum(n for _, n in by_utt)) == (total["errors"], total["ref_length"])
    assert by_utt[0] == (jiwer.process_words(refs[0], hyps[0]).substitutions + jiwer.process_words(refs[0], hyps[0]).deletions
                         + jiwer.process_words(refs[0], hyps[0]).insertions, len(refs[0].split()))
    prefs = ["K AE T", "DH AH D AO G", "S IH T"]
    phyps = ["K AH T S", "", "S IH"]
    by_utt, total = per_by_utterance(prefs, phyps), per(prefs, phyps)
    assert by_utt == [(2, 3), (5, 5), (1, 3)]
    assert (sum(e for e, _ in by_utt), sum(n for _, n in by_utt)) == (total["errors"], total["ref_length"])
