"""Intervals, paired comparisons and verdicts of scored checkpoints (pronounce.scoring.bootstrap does the
resampling): what the score stage writes beside each metric and the report reads back.

- `utterance_table`: the per-utterance sufficient statistics of every checkpoint of a config,
  written to scores/<config>/utterances.json, so that the report (and `--compare` of two runs)
  can resample two configs on the same speakers without re-scoring.
- `checkpoint_intervals`: every metric of every checkpoint with its interval, at the level the
  test set allows (bootstrap.plan), all checkpoints on the same resamples.
- `comparisons`: a - b of every metric for pairs of checkpoints, paired (the same resampled
  speakers on both sides), with its interval and p-value; `significant` when p < 1 - confidence.
- `verdict`: where the paper's value lies against our interval: consistent (inside), or ours
  above / below it. Our interval covers test-set sampling only: a training seed is another source
  of variation it does not include (README, score stage).
"""

from __future__ import annotations

from .bootstrap import Settings, UtteranceStats, interval, metric_names, paired, plan, point, resample

VERDICTS = ("consistent", "above", "below")


def settings_of(d: dict) -> Settings:
    return Settings(d["seed"], d["n_resamples"], d["level"], d["min_speakers"], d["confidence"])


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
            "mdd": u["mdd"]}
    return table


def stats_of(table: dict, name: str) -> UtteranceStats:
    c = table["checkpoints"][name]
    return UtteranceStats.from_json({
        "apa": {a: {"predicted": c["predicted"][a], "human": table["human"][a]} for a in table["human"]},
        **{k: c[k] for k in ("wer_errors", "wer_ref", "per_errors", "per_ref", "mdd")}})


def checkpoint_intervals(table: dict, settings: Settings, pairs=()) -> dict:
    """{"plan": level and why, "checkpoints": {name: {metric: {value, low, high, n_undefined,
    reason}}}, "comparisons": [...] for `pairs` of checkpoint names (a, b): a - b}."""
    how = plan(table["speakers"], settings)
    names = list(table["checkpoints"])
    stats = {n: stats_of(table, n) for n in names}
    draws = resample(stats, table["speakers"], settings, how["level"])
    estimates = {n: point(stats[n]) for n in names}
    out = {n: {m: {"value": estimates[n][m], **interval(draws[n][m], estimates[n][m], settings.confidence)}
               for m in metric_names(table["human"])} for n in names}
    comps = [compare(a, b, draws[a], draws[b], estimates[a], estimates[b], settings) for a, b in pairs]
    configured = {("configured_level" if k == "level" else k): v for k, v in settings.__dict__.items()}
    return {"plan": {**configured, **how}, "checkpoints": out, "comparisons": comps}


def compare(a: str, b: str, draws_a: dict, draws_b: dict, est_a: dict, est_b: dict, settings: Settings) -> dict:
    alpha = 1 - settings.confidence
    metrics = {}
    for m in draws_a:
        d = paired(draws_a[m], draws_b[m], est_a[m], est_b[m], settings.confidence)
        metrics[m] = {**d, "significant": None if d["p_value"] is None else d["p_value"] < alpha}
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
    entirely above / below the paper's value (for WER and PER, above is worse)."""
    if paper_value is None or not ci or ci.get("low") is None:
        return None
    if paper_value < ci["low"]:
        return "above"
    if paper_value > ci["high"]:
        return "below"
    return "consistent"
