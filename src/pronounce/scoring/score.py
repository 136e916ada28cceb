"""Stage `score`: the paper's metrics (section 4.3) of one config's predictions, per checkpoint.

Reads predictions/<config>/*.jsonl, predictions/base/epoch-0.jsonl and the test labels; never
generates. APA: Pearson r per aspect; an unparsed answer is left out (`n_dropped`) and counted in
the parse rate. MDD: WER, PER, the field's TA/FR/FA/TR counting (metrics.mdd_counts) with its
insertion-penalised variant beside it, and the paper-style P/R/F1 (mdd_paper) that Table 3's are
judged against (paper.JUDGED_BY). An unparsed MDD answer is never dropped and never helps: an
empty transcript for WER/PER (len(reference) errors), every decision wrong for the counts (an
empty transcript there would give recall 1.0). Writes metrics/<config>.json and its headline,
metrics/<config>/{headline,verdict}.json (set beside Table 3 by pronounce.scoring.config_metrics),
and scores/<config>/{details,utterances,apa_scatter,per_vs_accuracy}.json.

Why, and every file's keys: docs/scoring.md#the-score-stages-files-and-the-unparsed-rule
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.artifacts import read_arrow, write_json
from ..core.errors import PipelineError
from ..core.params import ScoreJob
from ..data.phones import annotation_pairs
from ..task.parse import SCORE_RANGE, ParseResult, summarise
from ..task.predictions import BASE_NAME, FINAL, read_jsonl
from ..task.prompts import APA_FIELDS, TASKS
from .config_metrics import INS_PENALISED, WITH_CI, config_metrics, headline, strategy_of, strategy_reading
from .intervals import checkpoint_intervals, settings_of, utterance_table
from .metrics import (
    mdd_counts,
    mdd_scores,
    mdd_worst_case,
    pcc,
    penalise_insertions,
    per,
    per_by_utterance,
    sum_counts,
    wer,
    wer_by_utterance,
)
from .mdd_paper import NAMES as PAPER_STYLE
from .mdd_paper import READING, paper_style
from .paper import PAPER_SOURCE, RECONSTRUCTED, fmt

UNPARSED_RULE = (
    "APA: an unparsed answer is excluded from the PCC (n_dropped) and counted in the parse rate. "
    "MDD: an unparsed answer counts as an empty transcript for WER and PER (every reference word/phone "
    "a deletion) and as the worst case for the MDD counts (every correctly pronounced phone a false "
    "rejection, every mispronounced one a false acceptance; no true acceptance or rejection)."
)
UNPARSED_APA_WORST = (
    "Beside each PCC, `<aspect>_pcc_unparsed_worst` counts every unparsed APA answer as the worst "
    f"answer instead of leaving it out: the end of the {SCORE_RANGE[0]}-{SCORE_RANGE[1]} scale farther "
    "from the human score (so a model that often answers badly cannot look better than it is)."
)


class ScoreError(PipelineError):
    """Predictions that cannot be scored (wrong test set, a parse rate under score.min_parse_rate)."""


# --------------------------------------------------------------------------- inputs


def load_labels(decoded_test) -> dict[str, dict]:
    """utt_id -> text, the four human scores, canonical and pronounced phones, and `pairs`,
    the canonical<->annotated pairing built from the words' annotations."""
    cols = ["utt_id", "speaker", "text", *APA_FIELDS, "words", "canonical_phones", "pronounced_phones"]
    rows = read_arrow(decoded_test).select(cols).to_pylist()
    return {r["utt_id"]: with_pairs(r, decoded_test) for r in rows}


def with_pairs(label: dict, where="labels") -> dict:
    """The label with its pairing; the pairing's two sides must be exactly the stored sequences
    (PER is counted on `pronounced_phones`, MDD on the pairing: they must describe one answer)."""
    pairs = annotation_pairs(label["words"])
    for side, stored, k in (("canonical", "canonical_phones", 0), ("annotated", "pronounced_phones", 1)):
        built = [p[k] for p in pairs if p[k] is not None]
        if built != label[stored]:
            raise ScoreError(f"{where}: utterance {label['utt_id']}: the {side} side of the pairing built from "
                             f"its words' annotations {built} != its stored {stored} {label[stored]}: the decoded "
                             "data and the phone conventions disagree; rerun the decode stage")
    return {**label, "pairs": pairs}


def check_coverage(rows: list[dict], labels: dict, what: str) -> None:
    """Exactly one prediction per (test utterance, task)."""
    keys = [(r["utt_id"], r["task"]) for r in rows]
    wanted = {(u, t) for u in labels for t in TASKS}
    if len(set(keys)) != len(keys):
        raise ScoreError(f"{what}: duplicate (utt_id, task) predictions")
    if set(keys) != wanted:
        extra, missing = sorted(set(keys) - wanted), sorted(wanted - set(keys))
        raise ScoreError(f"{what}: predictions do not match the test set ({len(missing)} missing, e.g. "
                         f"{missing[:2]}; {len(extra)} unknown, e.g. {extra[:2]}): rerun the evaluate stage")


def _parse_result(row: dict) -> ParseResult:
    return ParseResult(row["fields"], row["status"], tuple(row["flags"]))


def mdd_hypothesis(row: dict) -> tuple[str, list[str]]:
    """(word transcript, phones) of an MDD prediction; the unparsed rule: empty."""
    if _parse_result(row).ok:
        return row["fields"]["word_transcript"], list(row["fields"]["phoneme_transcript"])
    return "", []


def utterance_counts(row: dict, label: dict) -> dict:
    """TA/FR/FA/TR of one MDD prediction; the unparsed rule: the worst case (FR + FA only)."""
    if _parse_result(row).ok:
        return mdd_counts(label["pairs"], row["fields"]["phoneme_transcript"])
    return mdd_worst_case(label["pairs"])


def apa_prediction(row: dict, aspect: str):
    """An APA prediction's score, None when unparsed (left out of the PCC)."""
    return row["fields"][aspect] if _parse_result(row).ok else None


def worst_apa(prediction, human):
    """The unparsed-as-worst rule: an unparsed answer (None) becomes the end of the scale farther
    from the human score (the lower end on a tie at the middle)."""
    if prediction is not None:
        return prediction
    low, high = SCORE_RANGE
    return high if human - low < high - human else low


# --------------------------------------------------------------------------- scoring


def score_rows(rows: list[dict], labels: dict, what: str = "predictions") -> dict:
    """Every metric of one checkpoint's predictions: {"metrics": flat, "apa": ..., "wer": ..., ...}."""
    check_coverage(rows, labels, what)
    utts = sorted(labels)
    by = {(r["utt_id"], r["task"]): r for r in rows}
    predicted = {a: [apa_prediction(by[u, "apa"], a) for u in utts] for a in APA_FIELDS}
    human = {a: [labels[u][a] for u in utts] for a in APA_FIELDS}
    apa = {a: pcc(predicted[a], human[a]) for a in APA_FIELDS}
    apa_worst = {a: pcc([worst_apa(p, h) for p, h in zip(predicted[a], human[a])], human[a]) for a in APA_FIELDS}
    hyps = [mdd_hypothesis(by[u, "mdd"]) for u in utts]
    refs_words, refs_phones = [labels[u]["text"] for u in utts], [labels[u]["pronounced_phones"] for u in utts]
    w = wer(refs_words, [h[0] for h in hyps])
    p = per(refs_phones, [h[1] for h in hyps])
    per_utt = [utterance_counts(by[u, "mdd"], labels[u]) for u in utts]
    counts = sum_counts(per_utt)
    mdd = mdd_scores(counts)
    mdd_ins = mdd_scores(penalise_insertions(counts))
    style = paper_style([(r, h[1]) for r, h in zip(refs_phones, hyps)])  # h[1]: [] when unparsed
    parse = {t: summarise(_parse_result(by[u, t]) for u in utts) for t in TASKS}
    parsed = sum(parse[t]["parsed"] for t in TASKS)
    metrics = {f"{a}_pcc": apa[a]["value"] for a in APA_FIELDS}
    metrics.update(wer=w["value"], per=p["value"], precision=mdd["precision"], recall=mdd["recall"], f1=mdd["f1"],
                   diagnosis_accuracy=mdd["diagnosis_accuracy"], false_rejection_rate=mdd["false_rejection_rate"],
                   parse_rate=parsed / (2 * len(utts)), parse_rate_apa=parse["apa"]["parse_rate"],
                   parse_rate_mdd=parse["mdd"]["parse_rate"])
    metrics.update({f"{k}_ins_penalised": mdd_ins[k] for k in INS_PENALISED})
    metrics.update({k: style[k] for k in PAPER_STYLE})
    metrics.update({f"{a}_pcc_unparsed_worst": apa_worst[a]["value"] for a in APA_FIELDS})
    # the bootstrap's per-utterance sufficient statistics (scores/<config>/utterances.json)
    by_utt = {"predicted": predicted,
              "wer": wer_by_utterance(refs_words, [h[0] for h in hyps]), "per": per_by_utterance(refs_phones, [h[1] for h in hyps]),
              "mdd": {k: [c[k] for c in per_utt] for k in ("ta", "fr", "fa", "tr")},
              "paper_style": style["by_utterance"]}
    return {"metrics": metrics, "n_utterances": len(utts), "apa": apa, "apa_unparsed_worst": apa_worst, "wer": w,
            "per": p, "mdd_counts": counts, "mdd": mdd, "mdd_ins_penalised": mdd_ins,
            "mdd_paper_style": {"reading": READING, "counts": style["counts"], "reasons": style["reasons"],
                                "note": RECONSTRUCTED},
            "parse": parse,
            "truncated": sum(r.get("stopped") == "max_new_tokens" for r in rows), "utterances": by_utt}


def apa_scatter(rows: list[dict], labels: dict) -> list[dict]:
    """Plot data: one point per parsed APA answer and aspect."""
    out = []
    for r in sorted(rows, key=lambda r: r["utt_id"]):
        if r["task"] == "apa" and _parse_result(r).ok:
            for a in APA_FIELDS:
                out.append({"utt_id": r["utt_id"], "aspect": a, "human": labels[r["utt_id"]][a],
                            "predicted": r["fields"][a]})
    return out


def per_vs_accuracy(rows: list[dict], labels: dict) -> list[dict]:
    """Plot data (the paper's Figure 5): per-utterance PER (unparsed rule applied) vs human accuracy."""
    out = []
    for r in sorted(rows, key=lambda r: r["utt_id"]):
        if r["task"] != "mdd":
            continue
        label = labels[r["utt_id"]]
        got = per([label["pronounced_phones"]], [mdd_hypothesis(r)[1]])
        out.append({"utt_id": r["utt_id"], "accuracy": label["accuracy"], "per": got["value"],
                    "parsed": _parse_result(r).ok})
    return [row for row in out if row["per"] is not None]


# --------------------------------------------------------------------------- the stage


def checkpoint_files(pred_dir) -> list[tuple[str, int | None, Path]]:
    """(name, epoch, file) of the checkpoints in a predictions folder, from its summary.json."""
    pred_dir = Path(pred_dir)
    summary_path = pred_dir / "summary.json"
    if not summary_path.is_file():
        raise ScoreError(f"{summary_path} not found: run the evaluate stage first")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return [(c["name"], c["epoch"], pred_dir / c["file"]) for c in summary["checkpoints"]]


def run_score(job: ScoreJob, decoded_dir, pred_dir, base_pred_dir, metrics_path, out_dir, log=print,
              headline_dir=None) -> dict:
    """Score one config; `headline_dir` (metrics/<config>/): where headline.json and verdict.json go
    (None: not written)."""
    name = job.name
    strategy = strategy_of(job.config)
    labels = load_labels(Path(decoded_dir) / "test.arrow")

    checkpoints = {}  # name -> (epoch, scored, rows)
    for ckpt, epoch, path in checkpoint_files(pred_dir):
        rows = read_jsonl(path)
        checkpoints[ckpt] = (epoch, score_rows(rows, labels, str(path)), rows)
    if FINAL not in checkpoints:
        raise ScoreError(f"{pred_dir} has no predictions of the final adapter: rerun the evaluate stage")
    for ckpt, epoch, path in checkpoint_files(base_pred_dir):
        if epoch == 0:
            rows = read_jsonl(path)
            checkpoints[f"{BASE_NAME}/{ckpt}"] = (0, score_rows(rows, labels, str(path)), rows)

    # intervals: every checkpoint on the same resampled speakers; paired comparisons of each
    # evaluated epoch with the one before it (epoch 0: the base model)
    table = utterance_table(sorted(labels), labels, {c: s for c, (_, s, _) in checkpoints.items()})
    chain = sorted(((e, c) for c, (e, _, _) in checkpoints.items() if c != FINAL and e is not None))
    pairs = [(later, earlier) for (_, earlier), (_, later) in zip(chain, chain[1:])]
    settings = settings_of(vars(job.intervals))
    boot = checkpoint_intervals(table, settings, pairs)
    for ckpt, (_, scored, _) in checkpoints.items():
        del scored["utterances"]  # in utterances.json, not details.json
        scored["intervals"] = boot["checkpoints"][ckpt]

    final_epoch, final, final_rows = checkpoints[FINAL]
    metrics = config_metrics({c: (e, s) for c, (e, s, _) in checkpoints.items()}, strategy, boot["plan"]["level"])
    final_ci = final["intervals"]

    details = {
        "config": name, "strategy": strategy, "strategy_reading": strategy_reading(job.config),
        "model_base": job.model_base,
        "corpus": job.corpus, "unparsed_rule": UNPARSED_RULE, "unparsed_apa_worst": UNPARSED_APA_WORST,
        "paper_target": {"source": PAPER_SOURCE, "strategy": strategy, "epoch": metrics["paper_epoch"]},
        "intervals": boot["plan"], "epoch_comparisons": boot["comparisons"],
        "metrics": metrics,
        "checkpoints": {ckpt: {"epoch": epoch, **scored} for ckpt, (epoch, scored, _) in checkpoints.items()},
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "details.json", details)
    write_json(out_dir / "utterances.json", table)
    write_json(out_dir / "apa_scatter.json", apa_scatter(final_rows, labels))
    write_json(out_dir / "per_vs_accuracy.json", per_vs_accuracy(final_rows, labels))
    write_json(metrics_path, metrics)
    if headline_dir is not None:
        values, verdicts = headline(metrics)
        Path(headline_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(headline_dir) / "headline.json", values)
        write_json(Path(headline_dir) / "verdict.json", verdicts)

    bound = job.min_parse_rate
    low = {t: final["parse"][t]["parse_rate"] for t in TASKS if (final["parse"][t]["parse_rate"] or 0) < bound}
    if log:
        shown = ", ".join(f"{k} {fmt(metrics[k])}" + (f" ({final_ci[k]['too_few']})" if final_ci.get(k, {}).get("too_few")
                                                    else "") for k in (*WITH_CI, "parse_rate"))
        log(f"score {name} (final adapter, epoch {final_epoch}): {shown}")
    if low:
        raise ScoreError(f"{name}: the final adapter's parse rate is below score.min_parse_rate={bound} for "
                         + ", ".join(f"{t} ({v:.3f})" for t, v in low.items())
                         + f"; see {Path(pred_dir) / 'summary.json'} for why answers failed to parse")
    return metrics
