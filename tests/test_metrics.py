import math
import random

import jiwer
import numpy as np
import pytest
from scipy import stats

from pronounce.metrics import (
    Step, align, mdd_columns, mdd_counts, mdd_scores, normalise_words, pcc, per, sum_counts, wer,
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
    with pytest.raises(ValueError):
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
    with pytest.raises(ValueError):
        wer(["A"], [None])
    with pytest.raises(ValueError):
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
    # Documented in metrics.py: prefix/suffix matched first, then traceback from the end
    # preferring deletion, then insertion (only when D[i][j-1] < D[i-1][j-1]), then the diagonal.
    assert _ops("X Y", "Z") == [("replace", 0, 0), ("delete", 1, None)]
    assert _ops("A", "B C") == [("insert", None, 0), ("replace", 0, 1)]
    assert _ops("A A", "A") == [("equal", 0, 0), ("delete", 1, None)]
    assert _ops("A", "A A") == [("equal", 0, 0), ("insert", None, 1)]
    assert _ops("A B", "B A") == [("insert", None, 0), ("equal", 0, 1), ("delete", 1, None)]
    assert _ops("S T", "T") == [("delete", 0, None), ("equal", 1, 0)]


def _documented_align(a, b):
    """The documented tie-breaking as a plain dynamic programme (the specification of `align`)."""
    n, p, s = min(len(a), len(b)), 0, 0
    while p < n and a[p] == b[p]:
        p += 1
    while s < n - p and a[len(a) - 1 - s] == b[len(b) - 1 - s]:
        s += 1
    A, B = a[p:len(a) - s], b[p:len(b) - s]
    D = [[i + j if i == 0 or j == 0 else 0 for j in range(len(B) + 1)] for i in range(len(A) + 1)]
    for i in range(1, len(A) + 1):
        for j in range(1, len(B) + 1):
            D[i][j] = min(D[i - 1][j] + 1, D[i][j - 1] + 1, D[i - 1][j - 1] + (A[i - 1] != B[j - 1]))
    i, j, rev = len(A), len(B), []
    while i and j:
        if D[i][j] == D[i - 1][j] + 1:
            i -= 1
            rev.append(Step("delete", i + p, None))
        elif j >= 2 and D[i][j - 1] < D[i - 1][j - 1]:
            j -= 1
            rev.append(Step("insert", None, j + p))
        else:
            i, j = i - 1, j - 1
            rev.append(Step("equal" if A[i] == B[j] else "replace", i + p, j + p))
    rev += [Step("delete", k + p, None) for k in reversed(range(i))]
    rev += [Step("insert", None, k + p) for k in reversed(range(j))]
    return ([Step("equal", k, k) for k in range(p)] + rev[::-1]
            + [Step("equal", len(a) - s + k, len(b) - s + k) for k in range(s)])


def test_align_follows_documented_tie_breaking():
    rng = random.Random(0)
    for _ in range(3000):
        a = [rng.choice(["AA", "B", "<unk>"]) for _ in range(rng.randint(0, 9))]
        b = [rng.choice(["AA", "B", "<unk>"]) for _ in range(rng.randint(0, 9))]
        assert align(a, b) == _documented_align(a, b), (a, b)
    for _ in range(100):  # beyond 64 tokens rapidfuzz uses its blockwise bit-parallel kernel
        a = [rng.choice("ABCDE") for _ in range(rng.randint(60, 150))]
        b = [t for t in a if rng.random() > 0.1] + [rng.choice("ABCDE") for _ in range(rng.randint(0, 5))]
        assert align(a, b) == _documented_align(a, b)


# ---------------------------------------------------------------- MDD counting


def _counts(c, a, r):
    got = mdd_counts(c, a, r)
    return tuple(got[k] for k in ("ta", "fr", "fa", "tr", "tr_correct", "tr_error"))


@pytest.mark.parametrize("annotated, recognised, outcome", [
    ("K AE T", "K AE T", "TA"),          # human = canonical, model = canonical
    ("K AE T", "K AH T", "FR"),          # human = canonical, model differs
    ("K AH T", "K AE T", "FA"),          # human differs, model = canonical (missed)
    ("K AH T", "K AH T", "TR_correct"),  # human differs, model = human
    ("K AH T", "K IH T", "TR_error"),    # human differs, model differs from both
])
def test_every_row_of_the_table(annotated, recognised, outcome):
    cols = mdd_columns("K AE T", annotated, recognised)
    assert [col[3] for col in cols] == ["TA", outcome, "TA"]


@pytest.mark.parametrize("recognised, expected", [
    ("K AE", (2, 0, 0, 1, 1, 0)),      # model deletes it too: TR, correct diagnosis
    ("K AE T", (2, 0, 1, 0, 0, 0)),    # model says the canonical phone: FA
    ("K AE D", (2, 0, 0, 1, 0, 1)),    # model says another phone: TR, diagnosis error
    ("K AE T S", (2, 1, 1, 0, 0, 0)),  # FA for T, and the extra S is a false rejection
])
def test_deletion_in_the_annotation(recognised, expected):
    assert _counts("K AE T", "K AE", recognised) == expected


def test_deletion_in_the_middle_is_paired_with_the_model_phone():
    # The model's AE is an insertion relative to the annotation, in the gap where AE was deleted.
    assert mdd_columns("K AE T", "K T", "K AE T") == [
        ("K", "K", "K", "TA"), ("AE", None, "AE", "FA"), ("T", "T", "T", "TA")]


@pytest.mark.parametrize("recognised, expected", [
    ("S AH T", (2, 0, 0, 1, 1, 0)),   # model has the inserted vowel: TR correct
    ("S T", (2, 0, 1, 0, 0, 0)),      # model omits it: FA
    ("S IH T", (2, 0, 0, 1, 0, 1)),   # model has another vowel: TR, diagnosis error
])
def test_insertion_in_the_annotation(recognised, expected):
    assert _counts("S T", "S AH T", recognised) == expected
    # one column per canonical phone plus one for the inserted phone
    assert sum(expected[:4]) == 3


def test_model_insertions_and_deletions_of_correct_phones_are_false_rejections():
    assert _counts("K AE T", "K AE T", "K AE T S") == (3, 1, 0, 0, 0, 0)
    assert _counts("K AE T", "K AE T", "K AE") == (2, 1, 0, 0, 0, 0)
    assert _counts("K AE T", "K AE T", "") == (0, 3, 0, 0, 0, 0)


@pytest.mark.parametrize("recognised, outcome", [
    ("K <unk> T", "TR_correct"),   # <unk> is an ordinary token: it equals only <unk>
    ("K <UNK> T", "TR_correct"),   # spelled <unk> whatever its case
    ("K AE T", "FA"),
    ("K AH T", "TR_error"),
])
def test_unk_in_the_annotation(recognised, outcome):
    assert mdd_columns("K AE T", "K <unk> T", recognised)[1][3] == outcome


def test_unk_from_the_model_on_a_correct_phone_is_a_false_rejection():
    assert _counts("K AE T", "K AE T", "K <unk> T") == (2, 1, 0, 0, 0, 0)


def test_sequences_are_normalised_alike():
    assert _counts("K AE1 T", "k ae0 t*", ["K", "AE2", "T"]) == (3, 0, 0, 0, 0, 0)


def test_sentence_with_everything():
    canonical = "W IY K AO L IH T B EH R"
    annotated = "W IY K AO IH D B AE R"      # L deleted, T -> D, EH -> AE
    recognised = "W IY K AO L IH D B EH R Z"  # says L (FA), D (TR correct), EH (FA), inserts Z (FR)
    assert _counts(canonical, annotated, recognised) == (7, 1, 2, 1, 1, 0)  # 10 canonical + 1 inserted


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
    got = mdd_scores(mdd_counts("K AE T", "K AE T", "K AE T"))
    assert got["recall"] is None and got["precision"] is None and got["false_rejection_rate"] == 0.0


def test_f1_is_zero_when_precision_and_recall_are_zero():
    got = mdd_scores({"ta": 1, "fr": 2, "fa": 3, "tr": 0, "tr_correct": 0, "tr_error": 0})
    assert (got["precision"], got["recall"], got["f1"]) == (0.0, 0.0, 0.0)
    assert got["diagnosis_accuracy"] is None and "diagnosis_accuracy" in got["reasons"]


def test_corpus_level_sums_counts():
    utts = [("K AE T", "K AH T", "K AH T"), ("S T", "S T", "S T S"), ("K AE T", "K AE", "K AE T")]
    total = sum_counts(mdd_counts(*u) for u in utts)
    assert total == {"ta": 6, "fr": 1, "fa": 1, "tr": 1, "tr_correct": 1, "tr_error": 0}
    got = mdd_scores(total)
    assert got["precision"] == pytest.approx(0.5) and got["recall"] == pytest.approx(0.5)
    assert not math.isnan(got["f1"])
