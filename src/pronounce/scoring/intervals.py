"""Intervals, paired comparisons and verdicts of scored checkpoints (pronounce.scoring.bootstrap
resamples): what the score stage writes beside each metric and the report reads back.

- `utterance_table`: every checkpoint's per-utterance statistics (scores/<config>/utterances.json),
  so the report and `--compare` resample two configs on the same speakers without re-scoring.
- `checkpoint_intervals`: every metric of every checkpoint with its interval, all checkpoints on
  the same resamples, at the level the test set allows (bootstrap.plan).
- `comparisons`: paired a - b with its interval and p-value; `significant` when p < 1 - confidence.
- `verdict`: the paper's value inside our interval (consistent), or ours above / below it; our
  interval covers test-set sampling only, not another training seed.
Below `score.intervals.min_events` events of a metric's kind (bootstrap.events) there is no
interval, verdict or paired test but "too few (n = k)": a proportion's 95% interval over k events
covered the truth in 0% of simulated sets at k = 1, 65-96% at k = 10, 87-96% at k = 20.
Why, measured: docs/scoring.md#why-a-minimum-of-events-measured
"""

from __future__ import annotations

from .bootstrap import (
    EVENT_KINDS,
    Settings,
    UtteranceStats,
    events,
    interval,
    metric_names,
    paired,
    plan,
    point,
    resample,
)

VERDICTS = ("consistent", "above", "below")
TOO_FEW = "too few"  # a verdict, interval or paired test below its minimum of events: "too few (n = k)"


def settings_of(d: dict) -> Settings:
    """Settings from score.intervals (a dict, or vars() of the params' IntervalParams) or a
    details.json `intervals` plan (one written before min_events existed: no minimum)."""
    minima = d.get("min_events")
    minima = None if minima is None else dict(minima if isinstance(minima, dict) else vars(minima))
    return Settings(d["seed"], d["n_resamples"], d["level"], d["min_speakers"], d["confidence"], minima)


def too_few(counts: dict[str, int], minima: dict | None) -> dict | None:
    """None when every event count reaches its minimum, else {"label": "too few (n = k)", "n": k,
    "reason": which count, against which score.intervals.min_events key}: the first count short."""
    for kind, n in counts.items():
        least = (minima or {}).get(kind)
        if least is not None and n < least:
            one, many = EVENT_KINDS[kind]
            return {"label": f"{TOO_FEW} (n = {n})", "n": n,
                    "reason": f"too few: {n} {one if n == 1 else many}, fewer than "
                              f"score.intervals.min_events.{kind}={least}"}
    return None


def guarded(entry: dict, short: dict | None) -> dict:
    """An interval (or a paired difference) withheld when its events are too few: the value stays,
    the interval, p-value and significance become None, with the label and the reason."""
    if short is None:
        return {**entry, "too_few": None}
    withheld = {k: None for k in ("low", "high", "p_value", "significant") if k in entry}
    return {**entry, **withheld, "reason": short["reason"], "too_few": short["label"]}


def utterance_table(utts: list[str], labels: dict, scored: dict[str, dict]) -> dict:
    """{utt_ids, speakers, human, checkpoints: {name: per-utterance columns}} (JSON-ready)."""
    aspects = list(next(iter(scored.values()))["utterances"]["predicted"])
    table = {"utt_ids": utts, "speakers": [labels[u]["speaker"] for u in utts],
             "human": {a: [labels[u][a] for u in utts] for a in aspects}, "checkpoints": {}}
    for name, s in scored.items():
        u = s["utterances"]
        table["checkpoints"][name] = {
            "predicted": u["predicted"],
            "wer_errors": [e for e, _ in u["wer"]], "wer_ref": [n for _, n in u["wer"]],
            "per_errors": [e for e, _ in u["per"]], "per_ref": [n for _, n in u["per"]],
            "mdd": u["mdd"], "paper_style": u["paper_style"]}
    return table


def stats_of(table: dict, name: str) -> UtteranceStats:
    c = table["checkpoints"][name]
    return UtteranceStats.from_json({
        "apa": {a: {"predicted": c["predicted"][a], "human": table["human"][a]} for a in table["human"]},
        **{k: c[k] for k in ("wer_errors", "wer_ref", "per_errors", "per_ref", "mdd", "paper_style") if k in c}})


def checkpoint_intervals(table: dict, settings: Settings, pairs=()) -> dict:
    """{"plan": level and why, "checkpoints": {name: {metric: {value, low, high, n_undefined,
    reason}}}, "comparisons": [...] for `pairs` of checkpoint names (a, b): a - b}."""
    how = plan(table["speakers"], settings)
    names = list(table["checkpoints"])
    stats = {n: stats_of(table, n) for n in names}
    draws = resample(stats, table["speakers"], settings, how["level"])
    estimates = {n: point(stats[n]) for n in names}
    counts = {n: events(stats[n]) for n in names}
    out = {n: {m: guarded({"value": estimates[n][m], **interval(draws[n][m], estimates[n][m], settings.confidence),
                           "events": counts[n][m]}, too_few(counts[n][m], settings.min_events))
               for m in metric_names(table["human"])} for n in names}
    comps = [compare(a, b, draws[a], draws[b], estimates[a], estimates[b], settings, (counts[a], counts[b]))
             for a, b in pairs]
    configured = {("configured_level" if k == "level" else k): v for k, v in settings.__dict__.items()}
    return {"plan": {**configured, **how}, "checkpoints": out, "comparisons": comps}


def compare(a: str, b: str, draws_a: dict, draws_b: dict, est_a: dict, est_b: dict, settings: Settings,
            counts=None) -> dict:
    """a - b of every metric, paired; `counts` (events of a, events of b): a metric with too few
    events on either side gets no interval, p-value or significance (the smaller count named)."""
    alpha = 1 - settings.confidence
    metrics = {}
    for m in draws_a:
        d = paired(draws_a[m], draws_b[m], est_a[m], est_b[m], settings.confidence)
        d = {**d, "significant": None if d["p_value"] is None else d["p_value"] < alpha}
        short = None
        if counts is not None:
            fewest = {k: min(counts[0][m][k], counts[1][m][k]) for k in counts[0][m]}
            short = too_few(fewest, settings.min_events)
        metrics[m] = guarded(d, short)
    return {"a": a, "b": b, "paired": True, "metrics": metrics}


def compare_tables(table_a: dict, name_a: str, table_b: dict, name_b: str, settings: Settings) -> dict:
    """Checkpoint name_a of table_a minus name_b of table_b, paired on their common test set (the
    same utterances, speakers and human scores, else an error: nothing to pair)."""
    if table_a["utt_ids"] != table_b["utt_ids"] or table_a["speakers"] != table_b["speakers"]:
        raise ValueError("the two runs were scored on different test sets: a paired comparison needs the same "
                         "utterances and speakers")
    if table_a["human"] != table_b["human"]:
        raise ValueError("the two runs' human scores differ: not the same test labels")
    joint = {**table_a, "checkpoints": {"a": table_a["checkpoints"][name_a], "b": table_b["checkpoints"][name_b]}}
    got = checkpoint_intervals(joint, settings, [("a", "b")])
    return {"plan": got["plan"], **got["comparisons"][0], "a": name_a, "b": name_b}


def verdict(paper_value, ci: dict | None) -> str | None:
    """consistent: the paper's value inside our interval; above / below: our interval lies
    entirely above / below the paper's value (for WER and PER, above is worse); "too few (n = k)"
    where the interval rests on too few events (too_few)."""
    if paper_value is None or not ci:
        return None
    if ci.get("too_few"):
        return ci["too_few"]
    if ci.get("low") is None:
        return None
    if paper_value < ci["low"]:
        return "above"
    if paper_value > ci["high"]:
        return "below"
    return "consistent"
