"""Scoring hand-made predictions: exact metric values, undefined PCC, the unparsed rule, the
metrics JSON layout and the parse-rate bound."""

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest

from pronounce.core.params import ConfigParams, IntervalParams, MinEvents, ModelParams, ReportJob, ScoreJob
from pronounce.scoring import paper as P
from pronounce.scoring import score as S
from pronounce.scoring.config_metrics import diff_from_paper
from pronounce.task.parse import parse_output
from pronounce.task.predictions import write_jsonl


def word(text, phones, *mispronounced):
    """A decoded word: mispronounced = (index, pronounced phone) pairs."""
    phones = phones.split()
    return {"text": text, "phones": phones, "mispronunciations": [
        {"canonical_phone": phones[i].rstrip("012"), "index": i, "pronounced_phone": p} for i, p in mispronounced]}


# Four test utterances. u4 has one mispronounced phone (AE said as EH).
LABELS = [
    {"utt_id": "u1", "speaker": "s1", "text": "A CAT", "accuracy": 1.0, "fluency": 2.0, "prosodic": 3.0, "total": 2.0,
     "words": [word("A", "AH0"), word("CAT", "K AE1 T")],
     "canonical_phones": ["AH", "K", "AE", "T"], "pronounced_phones": ["AH", "K", "AE", "T"]},
    {"utt_id": "u2", "speaker": "s1", "text": "THE DOG", "accuracy": 2.0, "fluency": 4.0, "prosodic": 5.0, "total": 6.0,
     "words": [word("THE", "DH AH0"), word("DOG", "D AO1 G")],
     "canonical_phones": ["DH", "AH", "D", "AO", "G"], "pronounced_phones": ["DH", "AH", "D", "AO", "G"]},
    {"utt_id": "u3", "speaker": "s2", "text": "SIT", "accuracy": 4.0, "fluency": 6.0, "prosodic": 7.0, "total": 5.0,
     "words": [word("SIT", "S IH1 T")],
     "canonical_phones": ["S", "IH", "T"], "pronounced_phones": ["S", "IH", "T"]},
    {"utt_id": "u4", "speaker": "s2", "text": "BAD", "accuracy": 9.0, "fluency": 9.0, "prosodic": 9.0, "total": 9.0,
     "words": [word("BAD", "B AE1 D", (1, "EH"))],
     "canonical_phones": ["B", "AE", "D"], "pronounced_phones": ["B", "EH", "D"]},
]


def write_labels(path: Path, labels=LABELS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(labels)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def apa(utt, scores=None, raw=None, checkpoint="final", epoch=3):
    raw = raw if raw is not None else json.dumps(dict(zip(("accuracy", "fluency", "prosodic", "total"), scores)))
    return row(utt, "apa", raw, checkpoint, epoch)


def mdd(utt, words=None, phones=None, raw=None, checkpoint="final", epoch=3):
    raw = raw if raw is not None else json.dumps({"word_transcript": words, "phoneme_transcript": phones})
    return row(utt, "mdd", raw, checkpoint, epoch)


def row(utt, task, raw, checkpoint, epoch):
    r = parse_output(task, raw)
    return {"utt_id": utt, "task": task, "checkpoint": checkpoint, "epoch": epoch, "raw": raw, "n_tokens": 1,
            "stopped": "eos", "status": r.status, "flags": list(r.flags), "fields": r.fields}


def labels_dict(labels=LABELS):
    return {r["utt_id"]: S.with_pairs(r) for r in labels}


def good_rows(checkpoint="final", epoch=3):
    """u1-u3 predicted, u4's APA unparsed; u1 MDD perfect, u2 one substitution, u3 unparsed, u4 detected."""
    kw = {"checkpoint": checkpoint, "epoch": epoch}
    return [
        apa("u1", (1, 2, 3, 2), **kw), apa("u2", (2, 3, 5, 6), **kw), apa("u3", (3, 5, 7, 5), **kw),
        apa("u4", raw="I cannot rate this.", **kw),
        mdd("u1", "a cat", "AH K AE T", **kw),
        mdd("u2", "the dog", "DH AH T AO G", **kw),
        mdd("u3", raw="", **kw),
        mdd("u4", "bad", "B EH D", **kw),
    ]


def test_exact_values_and_unparsed_rule():
    got = S.score_rows(good_rows(), labels_dict())
    m = got["metrics"]
    # accuracy: pred (1,2,3) vs human (1,2,4); u4 unparsed, dropped. Deviations (-1,0,1), (-4/3,-1/3,5/3):
    # r = 3 / sqrt(2 * 42/9) = 9 / sqrt(84).
    assert m["accuracy_pcc"] == pytest.approx(9 / math.sqrt(84))
    assert got["apa"]["accuracy"]["n"] == 3 and got["apa"]["accuracy"]["n_dropped"] == 1
    assert got["apa"]["accuracy"]["p_value"] is not None
    # fluency: pred (2,3,5) vs human (2,4,6): deviations (-4/3,-1/3,5/3), (-2,0,2): r = 6 / sqrt(42/9 * 8)
    assert m["fluency_pcc"] == pytest.approx(6 / math.sqrt(42 / 9 * 8))
    assert m["prosodic_pcc"] == pytest.approx(1.0)
    # WER: u3 unparsed = empty: its 1 word deleted. Errors 0 + 0 + 1 + 0 over 2 + 2 + 1 + 1 words.
    assert got["wer"]["errors"] == 1 and got["wer"]["ref_length"] == 6 and m["wer"] == pytest.approx(1 / 6)
    # PER: u2 one substitution, u3's 3 phones deleted: 4 errors over 4 + 5 + 3 + 3 phones.
    assert (got["per"]["substitutions"], got["per"]["deletions"]) == (1, 3)
    assert m["per"] == pytest.approx(4 / 15)
    # MDD: u1 4 TA; u2 4 TA + 1 FR (D said as T); u3 unparsed = worst case: 3 FR; u4 B, D TA + EH TR correct.
    assert got["mdd_counts"] == {"ta": 10, "fr": 4, "fa": 0, "tr": 1, "tr_correct": 1, "tr_error": 0,
                                 "model_insertions": 0}
    assert m["precision"] == pytest.approx(1 / 5) and m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(2 * 0.2 / 1.2)
    assert m["diagnosis_accuracy"] == pytest.approx(1.0)
    # paper-style (index by index against the pronounced phones): u1 4 of 4, u2 4 of 5 (D said as T),
    # u3 unparsed = empty (0 recognised, 3 annotated), u4 3 of 3: 11 hits, 12 recognised, 15 annotated
    assert got["mdd_paper_style"]["counts"] == {"hits": 11, "recognised": 12, "annotated": 15}
    assert (m["precision_paper_style"], m["recall_paper_style"]) == (pytest.approx(11 / 12), pytest.approx(11 / 15))
    assert m["f1_paper_style"] == pytest.approx(22 / 27)
    assert (m["parse_rate_apa"], m["parse_rate_mdd"], m["parse_rate"]) == (0.75, 0.75, 0.75)


def test_worked_case_of_the_reference_from_the_annotations():
    # mdd_scoring.md: canonical AY L AH V AW AH K AA, AW said as AH and K deleted (annotated
    # AY L AH V AH AH AA), the model says AY L AH V AW AH K: TA 5, FR 1 (AA), FA 2 (AW, K), TR 0.
    label = S.with_pairs({"utt_id": "w", "words": [word("I", "AY1"), word("LOVE", "L AH1 V"),
                                                   word("X", "AW1 AH0 K AA1", (0, "AH"), (2, "<DEL>"))],
                          "canonical_phones": "AY L AH V AW AH K AA".split(),
                          "pronounced_phones": "AY L AH V AH AH AA".split()})
    assert label["pairs"][4:7] == [("AW", "AH"), ("AH", "AH"), ("K", None)]
    got = S.utterance_counts(mdd("w", "i love x", "AY L AH V AW AH K"), label)
    assert got == {"ta": 5, "fr": 1, "fa": 2, "tr": 0, "tr_correct": 0, "tr_error": 0, "model_insertions": 0}


def test_model_insertions_are_left_out_of_the_headline_and_penalised_in_the_variant():
    rows = [r for r in good_rows() if (r["utt_id"], r["task"]) != ("u1", "mdd")]
    got = S.score_rows(rows + [mdd("u1", "a cat", "AH K AE T S Z")], labels_dict())
    m = got["metrics"]
    # counts as in test_exact_values_and_unparsed_rule, plus u1's two insertions (S, Z) set aside
    assert got["mdd_counts"] == {"ta": 10, "fr": 4, "fa": 0, "tr": 1, "tr_correct": 1, "tr_error": 0,
                                 "model_insertions": 2}
    assert (m["precision"], m["recall"], m["false_rejection_rate"]) == (pytest.approx(1 / 5), 1.0, pytest.approx(4 / 14))
    # the variant: FR 4 + 2
    assert m["precision_ins_penalised"] == pytest.approx(1 / 7)
    assert m["f1_ins_penalised"] == pytest.approx(1 / 4)  # 2 * (1/7) * 1 / (1/7 + 1)
    assert m["false_rejection_rate_ins_penalised"] == pytest.approx(6 / 16)
    assert got["mdd_ins_penalised"]["recall"] == m["recall"]  # FA and TR are the same by construction


def test_labels_whose_annotations_disagree_with_the_stored_phones_stop_scoring(tmp_path):
    stale = [dict(LABELS[3], pronounced_phones=["B", "AE", "D"])]  # words say AE was said as EH
    with pytest.raises(S.ScoreError, match=r"utterance u4: the annotated side of the pairing .*'EH'.* "
                                           r"!= its stored pronounced_phones .*rerun the decode stage"):
        S.load_labels(write_labels(tmp_path / "test.arrow", stale))
    stale = [dict(LABELS[0], canonical_phones=["AH", "K", "AE"])]
    with pytest.raises(S.ScoreError, match="the canonical side of the pairing"):
        S.with_pairs(stale[0])


def test_pairing_of_the_bundled_test_set(decoded_bundle):
    """The real decoded labels: the pairing reproduces both stored sequences (load_labels checks
    it), one column per canonical phone, a mispronunciation where the corpus names one."""
    labels = S.load_labels(decoded_bundle / "test.arrow")
    assert len(labels) == 40
    assert all(len(lab["pairs"]) == len(lab["canonical_phones"]) for lab in labels.values())
    named = sorted((u, w["text"], m["index"], m["pronounced_phone"]) for u, lab in labels.items()
                   for w in lab["words"] for m in w["mispronunciations"])
    mispronounced = sorted(u for u, lab in labels.items() for c, a in lab["pairs"] if c != a)
    assert len(named) >= 1 and mispronounced == [n[0] for n in named]
    # the annotation itself as the answer: no false rejection, no miss
    for u, lab in labels.items():
        got = S.utterance_counts(mdd(u, lab["text"], " ".join(lab["pronounced_phones"])), lab)
        assert got["fr"] == got["fa"] == got["model_insertions"] == 0 and got["tr"] == got["tr_correct"]


def test_constant_prediction_gives_null_pcc_with_reason():
    rows = [apa(u, (7, 7, 7, 7)) for u in ("u1", "u2", "u3", "u4")] + [mdd(u, "x", "AH") for u in ("u1", "u2", "u3", "u4")]
    got = S.score_rows(rows, labels_dict())
    assert got["metrics"]["accuracy_pcc"] is None
    assert got["apa"]["accuracy"]["reason"] == "predictions are constant (7)"
    assert got["apa"]["accuracy"]["p_value"] is None and got["apa"]["accuracy"]["n"] == 4


def test_unparsed_mdd_never_earns_credit():
    """An unparsed answer of u4 (a mispronounced utterance) counts FR + FA, never TR: under the empty
    transcript's table every phone would be 'rejected' and recall would be a perfect 1.0."""
    labels = labels_dict()
    unparsed = S.utterance_counts(mdd("u4", raw="{broken"), labels["u4"])
    assert unparsed == {"ta": 0, "fr": 2, "fa": 1, "tr": 0, "tr_correct": 0, "tr_error": 0, "model_insertions": 0}
    for said in ("B EH D", "B AE D", "P EH T", "", "B"):
        parsed = S.utterance_counts(mdd("u4", "bad", said or "AH") if said else mdd("u4", raw="{}"), labels["u4"])
        assert parsed["tr"] >= unparsed["tr"] and parsed["ta"] >= unparsed["ta"]
    # and an unparsed answer adds exactly len(reference) errors to WER and PER
    got = S.score_rows([apa(u, (1, 2, 3, 4)) for u in labels] + [mdd(u, raw="nope") for u in labels], labels)
    assert got["wer"]["errors"] == got["wer"]["ref_length"] == 6 and got["wer"]["deletions"] == 6
    assert got["per"]["errors"] == got["per"]["deletions"] == 15
    assert got["metrics"]["recall"] == 0.0 and got["metrics"]["precision"] == 0.0


def test_coverage_is_checked():
    rows = good_rows()
    with pytest.raises(S.ScoreError, match="do not match the test set"):
        S.score_rows(rows[:-1], labels_dict())
    with pytest.raises(S.ScoreError, match="duplicate"):
        S.score_rows(rows + rows[:1], labels_dict())


def write_predictions(folder: Path, checkpoints: dict) -> Path:
    """checkpoints: name -> (epoch, rows), written as pronounce.evaluation.evaluate does."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"checkpoints": []}
    for name, (epoch, rows) in checkpoints.items():
        write_jsonl(folder / f"{name}.jsonl", rows)
        summary["checkpoints"].append({"name": name, "epoch": epoch, "file": f"{name}.jsonl"})
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return folder


def params(base="builtin:tiny", unfreeze=False, min_parse_rate=0.0, configs=("cfg",)):
    return {
        "model": {"base": base, "revision": None},
        "data": {"corpus": "data/speechocean762-mini"},
        "train": {"profile": "smoke"},
        "configs": {c: {"init": "fresh", "lora_params": "lora", "unfreeze_audio": unfreeze} for c in configs},
        "score": {"min_parse_rate": min_parse_rate, "intervals": dict(INTERVALS)},
    }


# quick intervals for the tests (the stage's default is 2,000 resamples); minima of events low
# enough for the 4-utterance fixture (tests of the minima set their own)
LOW_MINIMA = {"utterances": 2, "mispronounced": 1, "rejections": 1}
INTERVALS = {"seed": 0, "n_resamples": 200, "level": "speaker", "min_speakers": 10, "confidence": 0.95,
             "min_events": LOW_MINIMA}


def score_job(p: dict, name: str) -> ScoreJob:
    """What the score stage of config `name` reads, from a `params()` dict."""
    iv = p["score"]["intervals"]
    return ScoreJob(name, ConfigParams(**p["configs"][name]), p["model"]["base"], p["data"]["corpus"],
                    p["score"]["min_parse_rate"], IntervalParams(**{**iv, "min_events": MinEvents(**iv["min_events"])}))


def report_job(p: dict) -> ReportJob:
    """What the report stage reads, from a `params()` dict."""
    return ReportJob(tuple(p["configs"]), ModelParams(p["model"]["base"], p["model"]["revision"], "sdpa"),
                     p["data"]["corpus"], p["train"]["profile"])


def make_scored(tmp: Path, name="cfg", p=None):
    """Predictions of a config (final = epoch 3, plus epochs 2 and 3) and the base; run_score."""
    labels = write_labels(tmp / "decoded" / "test.arrow")
    write_predictions(tmp / "predictions" / "base", {"epoch-0": (0, [
        *(apa(u, raw="garbage", checkpoint="epoch-0", epoch=0) for u in ("u1", "u2", "u3", "u4")),
        *(mdd(u, raw="garbage", checkpoint="epoch-0", epoch=0) for u in ("u1", "u2", "u3", "u4"))])})
    write_predictions(tmp / "predictions" / name, {
        "final": (3, good_rows()),
        "epoch-2": (2, [apa(u, (5, 5, 5, 5), checkpoint="epoch-2", epoch=2) for u in ("u1", "u2", "u3", "u4")]
                    + [mdd(u, "a", "AH", checkpoint="epoch-2", epoch=2) for u in ("u1", "u2", "u3", "u4")]),
        "epoch-3": (3, good_rows("epoch-3", 3)),
    })
    p = p or params(configs=(name,))
    metrics = S.run_score(score_job(p, name), labels.parent, tmp / "predictions" / name, tmp / "predictions" / "base",
                          tmp / "metrics" / f"{name}.json", tmp / "scores" / name, log=None)
    return metrics


def test_run_score_writes_metrics_json(tmp_path):
    metrics = make_scored(tmp_path)
    on_disk = json.loads((tmp_path / "metrics" / "cfg.json").read_text())
    assert on_disk == metrics
    for key in P.HEADLINE + ("parse_rate", "parse_rate_apa", "parse_rate_mdd", "precision_ins_penalised",
                             "f1_ins_penalised", "false_rejection_rate_ins_penalised"):
        assert key in metrics
    assert metrics["accuracy_pcc"] == round(9 / math.sqrt(84), 6)
    assert metrics["epoch"] == 3 and metrics["n_utterances"] == 4
    assert set(metrics["epochs"]) == {"0", "2", "3"}
    assert metrics["epochs"]["3"] == {**{k: metrics[k] for k in (*S.WITH_CI, "parse_rate")},
                                      **{f"{k}_ci": metrics[f"{k}_ci"] for k in S.WITH_CI},
                                      "paper": metrics["paper"], "diff": metrics["diff"], "verdict": metrics["verdict"]}
    assert metrics["epochs"]["0"]["parse_rate"] == 0.0 and metrics["epochs"]["2"]["accuracy_pcc"] is None
    assert metrics["paper"] == P.paper_row("LoRA", 3) and metrics["paper"]["accuracy_pcc"] == 0.656
    assert metrics["diff"]["wer"] == round(metrics["wer"] - 0.14, 6)
    assert metrics["diff"]["f1_paper_style"] == round(metrics["f1_paper_style"] - 0.724, 6)
    assert metrics["diff"]["accuracy_pcc"] == round(metrics["accuracy_pcc"] - 0.656, 6)
    details = json.loads((tmp_path / "scores" / "cfg" / "details.json").read_text())
    assert set(details["checkpoints"]) == {"final", "epoch-2", "epoch-3", "base/epoch-0"}
    assert details["checkpoints"]["final"]["apa"]["accuracy"]["p_value"] > 0
    scatter = json.loads((tmp_path / "scores" / "cfg" / "apa_scatter.json").read_text())
    assert len(scatter) == 3 * 4 and {"utt_id", "aspect", "human", "predicted"} == set(scatter[0])
    fig5 = json.loads((tmp_path / "scores" / "cfg" / "per_vs_accuracy.json").read_text())
    assert [(r["utt_id"], r["per"], r["parsed"]) for r in fig5] == [
        ("u1", 0.0, True), ("u2", 0.2, True), ("u3", 1.0, False), ("u4", 0.0, True)]
    # a rerun writes the same bytes, intervals included
    before = {f: f.read_bytes() for f in (tmp_path / "metrics" / "cfg.json", tmp_path / "scores" / "cfg" / "details.json",
                                           tmp_path / "scores" / "cfg" / "utterances.json")}
    make_scored(tmp_path)
    assert {f: f.read_bytes() for f in before} == before


def test_intervals_in_metrics_and_details(tmp_path):
    """Two speakers: no clustered interval (fewer than min_speakers), the utterance-level one,
    labelled, with the reason; every interval holds its point estimate; verdicts against the paper."""
    metrics = make_scored(tmp_path)
    details = json.loads((tmp_path / "scores" / "cfg" / "details.json").read_text())
    assert metrics["interval_level"] == "utterance"
    assert details["intervals"]["level"] == "utterance" and details["intervals"]["n_speakers"] == 2
    assert "fewer than score.intervals.min_speakers=10" in details["intervals"]["reason"]
    assert details["intervals"]["n_resamples"] == 200 and details["intervals"]["seed"] == 0
    for k in P.HEADLINE:
        ci = metrics[f"{k}_ci"]
        assert ci["low"] <= metrics[k] <= ci["high"], k
    for a in ("accuracy", "fluency", "prosodic", "total"):
        assert f"{a}_scc" in metrics and f"{a}_rmse" in metrics and f"{a}_scc_ci" in metrics
    final = details["checkpoints"]["final"]["intervals"]
    assert final["accuracy_pcc"]["value"] == pytest.approx(9 / math.sqrt(84))
    assert final["accuracy_rmse"]["value"] == pytest.approx(math.sqrt(1 / 3))  # errors 0, 0, -1 on parsed u1-u3
    # the epoch-2 answers are constant: undefined PCC, and so its interval, with the reason
    e2 = details["checkpoints"]["epoch-2"]["intervals"]["accuracy_pcc"]
    assert e2["low"] is None and e2["reason"] == "the metric itself is undefined"
    # verdicts: the paper's 0.14 WER is far below our interval [low, high] of a 1/6 WER? say which
    assert list(metrics["verdict"]) == [P.JUDGED_BY[k] for k in P.HEADLINE]
    for key in P.HEADLINE:
        k = P.JUDGED_BY[key]
        v, ci, theirs = metrics["verdict"][k], metrics[f"{k}_ci"], metrics["paper"][key]
        assert v == ("consistent" if ci["low"] <= theirs <= ci["high"] else "above" if theirs < ci["low"] else "below")
    # consecutive epochs compared, paired: epoch 2 - base, epoch 3 - epoch 2
    comps = [(c["a"], c["b"], c["paired"]) for c in details["epoch_comparisons"]]
    assert comps == [("epoch-2", "base/epoch-0", True), ("epoch-3", "epoch-2", True)]
    utts = json.loads((tmp_path / "scores" / "cfg" / "utterances.json").read_text())
    assert utts["speakers"] == ["s1", "s1", "s2", "s2"] and utts["checkpoints"]["final"]["per_errors"] == [0, 1, 3, 0]


def test_unparsed_apa_counted_as_the_worst_case_too(tmp_path):
    got = S.score_rows(good_rows(), labels_dict())
    # u4 (human 9 on every aspect) unparsed: the worst answer is 0, the scale's far end
    assert S.worst_apa(None, 9.0) == 0 and S.worst_apa(None, 2.0) == 10 and S.worst_apa(7, 2.0) == 7
    human = [1.0, 2.0, 4.0, 9.0]
    from scipy import stats
    assert got["metrics"]["accuracy_pcc_unparsed_worst"] == pytest.approx(stats.pearsonr([1, 2, 3, 0], human).statistic)
    assert got["metrics"]["accuracy_pcc_unparsed_worst"] < got["metrics"]["accuracy_pcc"]


def test_unfreeze_config_targets_the_unfreeze_row(tmp_path):
    metrics = make_scored(tmp_path, p=params(unfreeze=True))
    assert metrics["paper"]["accuracy_pcc"] == 0.621


@pytest.mark.parametrize("unfreeze, strategy", [(False, "LoRA"), (True, "Unfreeze")])
def test_each_epoch_is_set_beside_the_papers_row_of_that_epoch(tmp_path, unfreeze, strategy):
    """The paper profile: 4 epochs, all evaluated; each against Table 3's row of its epoch and strategy."""
    labels = write_labels(tmp_path / "decoded" / "test.arrow")
    write_predictions(tmp_path / "predictions" / "base", {"epoch-0": (0, good_rows("epoch-0", 0))})
    write_predictions(tmp_path / "predictions" / "cfg", {
        "final": (4, good_rows("final", 4)), **{f"epoch-{k}": (k, good_rows(f"epoch-{k}", k)) for k in (1, 2, 3, 4)}})
    metrics = S.run_score(score_job(params(unfreeze=unfreeze), "cfg"), labels.parent, tmp_path / "predictions" / "cfg",
                          tmp_path / "predictions" / "base", tmp_path / "metrics" / "cfg.json",
                          tmp_path / "scores" / "cfg", log=None)
    ours = metrics["accuracy_pcc"]  # the same answers at every epoch: only the paper's row moves
    table = {(r["strategy"], r["epoch"]): r for r in P.PAPER_TABLE3}
    assert set(metrics["epochs"]) == {"0", "1", "2", "3", "4"}
    for k in range(5):
        entry = metrics["epochs"][str(k)]
        row = table["none", 0] if k == 0 else table[strategy, k]
        assert entry["paper"] == {m: row[m] for m in P.HEADLINE}
        assert entry["diff"]["accuracy_pcc"] == round(ours - row["accuracy_pcc"], 6)
        assert entry["diff"]["wer"] == round(entry["wer"] - row["wer"], 6)
    # the final adapter (epoch 4) against the paper's epoch 4, not its epoch-3 headline
    assert metrics["paper_epoch"] == 4 and metrics["paper"] == metrics["epochs"]["4"]["paper"]
    assert metrics["paper"]["accuracy_pcc"] == (0.645 if strategy == "LoRA" else 0.743)
    details = json.loads((tmp_path / "scores" / "cfg" / "details.json").read_text())
    assert details["paper_target"] == {"source": P.PAPER_SOURCE, "strategy": strategy, "epoch": 4}


def test_no_paper_row_gives_no_diff():
    # (which epochs Table 3 lacks: test_paper)
    assert diff_from_paper({k: 0.5 for k in P.HEADLINE}, None) == {}


def test_min_parse_rate_fails_clearly(tmp_path):
    with pytest.raises(S.ScoreError, match=r"min_parse_rate=0.8 for apa \(0.750\), mdd \(0.750\)"):
        make_scored(tmp_path, p=params(min_parse_rate=0.8))
    assert (tmp_path / "metrics" / "cfg.json").is_file()  # written first, so the failure can be inspected



def test_the_headline_files_are_small_and_keyed_by_table3s_columns(tmp_path):
    """metrics/<config>/headline.json (what `dvc metrics show` prints by default) holds the final
    adapter's nine Table 3 numbers at the paper's three decimals and its epoch; verdict.json beside
    it the same keys, each number's verdict (the epoch: the paper row's)."""
    labels = write_labels(tmp_path / "decoded" / "test.arrow")
    write_predictions(tmp_path / "predictions" / "base", {"epoch-0": (0, good_rows("epoch-0", 0))})
    write_predictions(tmp_path / "predictions" / "cfg", {"final": (20, good_rows("final", 20))})
    metrics = S.run_score(score_job(params(), "cfg"), labels.parent, tmp_path / "predictions" / "cfg",
                          tmp_path / "predictions" / "base", tmp_path / "metrics" / "cfg.json",
                          tmp_path / "scores" / "cfg", log=None, headline_dir=tmp_path / "metrics" / "cfg")
    values = json.loads((tmp_path / "metrics" / "cfg" / "headline.json").read_text())
    verdicts = json.loads((tmp_path / "metrics" / "cfg" / "verdict.json").read_text())
    names = ["accuracy", "fluency", "prosodic", "total", "wer", "per", "f1_paper_style", "precision_paper_style",
             "recall_paper_style"]  # ours for P/R/F1: the paper-style reconstruction, named so
    assert list(P.HEADLINE_NAMES.values()) == names
    assert sorted(values) == sorted(verdicts) == sorted(["epoch", *names])
    assert values["epoch"] == 20 and verdicts["epoch"] == 3  # an epoch Table 3 lacks: against its epoch 3
    for key, name in P.HEADLINE_NAMES.items():
        ours = P.JUDGED_BY[key]
        assert values[name] == (None if metrics[ours] is None else round(metrics[ours], 3))
        assert verdicts[name] == (metrics["verdict"][ours] or "n/a")
    assert values["precision_paper_style"] == round(11 / 12, 3) != round(metrics["precision"], 3)  # not the standard
    assert values["wer"] == round(metrics["wer"], 3) and values["wer"] != metrics["wer"]  # 0.1666.. -> 0.167
    # small: one short line per config in `dvc metrics show`, not the detail's hundreds of keys
    assert len(values) == len(verdicts) == 10 < len(metrics)


@pytest.mark.parametrize("minimum, short", [(1, None), (2, "too few (n = 1)")])
def test_one_mispronounced_phone_gives_an_interval_only_under_a_minimum_of_one(tmp_path, minimum, short):
    """The fixture's test set has one mispronounced phone: at min_events.mispronounced 1 the standard
    recall gets an interval; at 2, "too few (n = 1)" in the metrics, details and paired tests. Either
    way the standard counting gets no paper verdict, and the paper-style verdicts (utterances behind
    them) do not move."""
    p = params()
    p["score"]["intervals"] = {**INTERVALS, "min_events": {**LOW_MINIMA, "mispronounced": minimum}}
    metrics = make_scored(tmp_path, p=p)
    assert not {"precision", "recall", "f1"} & set(metrics["verdict"])
    assert all(metrics["verdict"][k] in ("consistent", "above", "below") for k in S.PAPER_STYLE)
    if short is None:
        assert metrics["recall_ci"]["low"] is not None and "too_few" not in metrics["recall_ci"]
        return
    # recall, and precision and F1, whose numerators the one mispronounced phone caps
    assert metrics["recall_ci"] == metrics["precision_ci"] == metrics["f1_ci"] == {"low": None, "high": None,
                                                                                  "too_few": short}
    assert metrics["recall"] == 1.0  # the measured value stays
    assert metrics["recall_paper_style_ci"]["low"] is not None
    details = json.loads((tmp_path / "scores" / "cfg" / "details.json").read_text())
    final = details["checkpoints"]["final"]["intervals"]["recall"]
    assert final["events"] == {"mispronounced": 1} and "min_events.mispronounced=2" in final["reason"]
    assert details["intervals"]["min_events"]["mispronounced"] == 2
    # the paired comparison of epoch 3 with epoch 2 on recall: no test
    comp = details["epoch_comparisons"][1]
    assert comp["a"] == "epoch-3" and comp["metrics"]["recall"]["too_few"] == short
    assert comp["metrics"]["recall"]["p_value"] is None and comp["metrics"]["precision"]["too_few"] == short
    assert comp["metrics"]["wer"]["too_few"] is None and comp["metrics"]["wer"]["p_value"] is not None


# --------------------------------------------------------------------------- paper-style MDD

P_VERDICTS = ("consistent", "above", "below")


def shifted_rows():
    """MDD answers where an alignment and an index-by-index comparison disagree: u1 drops its first
    phone (every later one shifted), u2 inserts one early, u3 unparsed (the empty transcript), u4
    says what the annotation heard (EH, not the canonical AE)."""
    return [*(r for r in good_rows() if r["task"] == "apa"),
            mdd("u1", "a cat", "K AE T"), mdd("u2", "the dog", "DH Z AH D AO G"), mdd("u3", raw="{nope"),
            mdd("u4", "bad", "B EH D")]


def test_score_rows_gives_the_paper_style_metrics_of_its_pairs():
    """score_rows' paper-style metrics are mdd_paper.paper_style over (pronounced phones, recognised
    phones under the unparsed rule), and its per-utterance counts are the bootstrap's columns."""
    from pronounce.scoring.mdd_paper import paper_style

    labels = labels_dict()
    got = S.score_rows(shifted_rows(), labels)
    recognised = {"u1": "K AE T", "u2": "DH Z AH D AO G", "u3": "", "u4": "B EH D"}
    direct = paper_style([(labels[u]["pronounced_phones"], recognised[u].split()) for u in sorted(labels)])
    for k in S.PAPER_STYLE:
        assert got["metrics"][k] == direct[k], k
    assert got["utterances"]["paper_style"] == direct["by_utterance"]
    assert got["mdd_paper_style"]["counts"] == direct["counts"]
    # by hand: u1 0 of 3 (shifted), u2 1 of 6 (DH; then shifted), u3 0 of 0 (3 annotated), u4 3 of 3
    assert direct["by_utterance"] == {"hits": [0, 1, 0, 3], "recognised": [3, 6, 0, 3], "annotated": [4, 5, 3, 3]}
    assert got["metrics"]["precision_paper_style"] == pytest.approx(4 / 12)
    assert got["metrics"]["recall_paper_style"] == pytest.approx(4 / 15)
    # the standard counting (an alignment) credits the shifted phones: a different number
    assert got["metrics"]["precision"] != got["metrics"]["precision_paper_style"]


def test_paper_verdicts_of_precision_recall_f1_judge_the_paper_style_metrics(tmp_path):
    """Table 3's P/R/F1 against the paper-style metrics (verdict, ours - paper, headline files); the
    standard P/R/F1 keep values and intervals, without a verdict or a difference."""
    labels = write_labels(tmp_path / "decoded" / "test.arrow")
    write_predictions(tmp_path / "predictions" / "base", {"epoch-0": (0, good_rows("epoch-0", 0))})
    rows = [dict(r, checkpoint=c, epoch=3) for c in ("final", "epoch-3") for r in shifted_rows()]
    write_predictions(tmp_path / "predictions" / "cfg", {c: (3, [r for r in rows if r["checkpoint"] == c])
                                                          for c in ("final", "epoch-3")})
    metrics = S.run_score(score_job(params(), "cfg"), labels.parent, tmp_path / "predictions" / "cfg",
                          tmp_path / "predictions" / "base", tmp_path / "metrics" / "cfg.json",
                          tmp_path / "scores" / "cfg", log=None, headline_dir=tmp_path / "metrics" / "cfg")
    from pronounce.scoring.intervals import verdict

    paper = P.paper_row("LoRA", 3)
    for key, ours in (("precision", "precision_paper_style"), ("recall", "recall_paper_style"), ("f1", "f1_paper_style")):
        assert P.JUDGED_BY[key] == ours
        assert metrics["verdict"][ours] == verdict(paper[key], metrics[f"{ours}_ci"])
        assert metrics["diff"][ours] == round(metrics[ours] - paper[key], 6)
        assert key not in metrics["verdict"] and key not in metrics["diff"]  # the standard: no verdict
        assert metrics[f"{key}_ci"]["low"] is not None  # ... but its interval
        assert metrics["epochs"]["3"]["verdict"][ours] == metrics["verdict"][ours]
    assert metrics["precision_paper_style"] == round(4 / 12, 6)
    values = json.loads((tmp_path / "metrics" / "cfg" / "headline.json").read_text())
    verdicts = json.loads((tmp_path / "metrics" / "cfg" / "verdict.json").read_text())
    assert values["precision_paper_style"] == 0.333
    assert verdicts["precision_paper_style"] == metrics["verdict"]["precision_paper_style"] in P_VERDICTS
    assert "precision" not in values and values["wer"] == round(metrics["wer"], 3)
    # the per-utterance counts travel to utterances.json, for the report's paired comparisons
    table = json.loads((tmp_path / "scores" / "cfg" / "utterances.json").read_text())
    assert table["checkpoints"]["final"]["paper_style"]["hits"] == [0, 1, 0, 3]
