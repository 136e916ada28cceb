"""metrics/<config>.json and its headline: a config's scored checkpoints set beside the paper's
Table 3 (pronounce.scoring.paper). Rounded to DIGITS for reading (details.json keeps full
precision); each number with its interval, the paper's row of the same epoch and strategy, ours
minus it and the verdict, keyed by the metric of ours judged (paper.JUDGED_BY: the paper-style
P/R/F1, never the standard ones); the headline files name each number by Table 3's column.
pronounce.scoring.score scores the predictions; this module only sets the scores beside the paper.
"""

from __future__ import annotations

from ..core.params import ConfigParams
from ..task.predictions import FINAL
from ..task.prompts import APA_FIELDS
from .intervals import verdict
from .mdd_paper import NAMES as PAPER_STYLE
from .paper import HEADLINE, HEADLINE_NAMES, JUDGED_BY, paper_epoch_for, paper_row

INS_PENALISED = ("precision", "f1", "false_rejection_rate")  # the variant's fields: <name>_ins_penalised
EXTRA = ("diagnosis_accuracy", "false_rejection_rate", *(f"{k}_ins_penalised" for k in INS_PENALISED),
         "parse_rate", "parse_rate_apa", "parse_rate_mdd")
WITH_CI = (*HEADLINE, *PAPER_STYLE)  # the metrics written with their interval, per epoch too
EPOCH_KEYS = (*WITH_CI, "parse_rate")
DIGITS = 6  # metrics/<config>.json is rounded for reading; details.json keeps full precision


def strategy_of(cfg: ConfigParams) -> str:
    """The paper's strategy a config stands beside in Table 3 (strategy_reading says why)."""
    return "Unfreeze" if cfg.unfreeze_audio else "LoRA"


def strategy_reading(cfg: ConfigParams) -> str:
    """Why a config stands beside its strategy's rows: which adapter it trains, and how that reads
    the paper, which names no rank (the report prints it per config)."""
    lora = ("the base model's own speech LoRA, trained further (r=320 on the real model: the shipped "
            "adapter's rank)" if cfg.init == "speech-lora" else
            "a fresh LoRA from params.yaml's `lora` (r=64 by default: a third-party reproduction's choice)")
    if cfg.unfreeze_audio:
        return (f"Unfreeze (section 3.2): the LoRA plus the audio encoder and audio projector trained, the "
                f"language model and tokenizer frozen; its LoRA is {lora}")
    if cfg.init == "speech-lora":
        return (f"LoRA-only, the closest reading: the paper says \"only the LoRA adapter requires fine-tuning\", "
                f"the model's own adapter; here {lora}")
    return f"LoRA-only, a reproduction's reading: {lora}; the paper states no rank"


def round_metric(v):
    return None if v is None else round(float(v), DIGITS)


def flat_metrics(metrics: dict, keys=(*WITH_CI, *EXTRA)) -> dict:
    return {k: round_metric(metrics[k]) for k in keys}


def diff_from_paper(ours: dict, paper: dict | None) -> dict:
    """Ours minus the paper's row, keyed by the metric of ours judged (paper.JUDGED_BY)."""
    if paper is None:
        return {}
    return {JUDGED_BY[k]: (None if ours[JUDGED_BY[k]] is None or paper[k] is None
                           else round_metric(ours[JUDGED_BY[k]] - paper[k])) for k in HEADLINE}


def _with_ci(flat: dict, ci: dict, keys) -> dict:
    """The flat metrics with `<metric>_ci` {low, high} beside each of `keys` (rounded as they are)."""
    out = dict(flat)
    for k in keys:
        out[f"{k}_ci"] = _ci(ci[k])
    return out


def _ci(c: dict) -> dict:
    """{low, high} rounded; with `too_few` ("too few (n = k)") where the events were too few."""
    return {"low": round_metric(c["low"]), "high": round_metric(c["high"]),
            **({"too_few": c["too_few"]} if c.get("too_few") else {})}


def paper_verdicts(ci: dict, paper: dict | None) -> dict:
    """Each Table 3 number's verdict, keyed by the metric of ours judged against it (paper.JUDGED_BY):
    `precision_paper_style`, not `precision`: the standard counting gets none."""
    if paper is None:
        return {}
    return {JUDGED_BY[k]: verdict(paper[k], ci[JUDGED_BY[k]]) for k in HEADLINE}


def _extra_apa(ci: dict) -> dict:
    """Spearman (SCC) and RMSE beside each PCC: value and interval."""
    out = {}
    for a in APA_FIELDS:
        for m in ("scc", "rmse"):
            c = ci[f"{a}_{m}"]
            out[f"{a}_{m}"] = round_metric(c["value"])
            out[f"{a}_{m}_ci"] = _ci(c)
    return out


def headline(metrics: dict) -> tuple[dict, dict]:
    """(headline.json, verdict.json) of a config's metrics: the final adapter's numbers judged against
    Table 3's (paper.JUDGED_BY) at three decimals, as the paper prints them, and their verdicts ("n/a"
    where there is none), both keyed by Table 3's column names (`_paper_style` after P/R/F1: ours
    are the paper-style reconstruction); `epoch` ours in the first, the paper row's in the second."""
    values = {"epoch": metrics["epoch"]}
    verdicts = {"epoch": metrics["paper_epoch"]}
    for key, name in HEADLINE_NAMES.items():
        ours = metrics[JUDGED_BY[key]]
        values[name] = None if ours is None else round(ours, 3)
        verdicts[name] = (metrics.get("verdict") or {}).get(JUDGED_BY[key]) or "n/a"
    return values, verdicts


def config_metrics(scored: dict, strategy: str, level: str) -> dict:
    """metrics/<config>.json from `scored` (checkpoint -> (epoch, score_rows' result with its
    `intervals`)): the final adapter's metrics at top level with their intervals, SCC and RMSE, the
    paper's row of its epoch (`paper_epoch`), ours minus it and the verdicts; `epochs` the same per
    evaluated epoch; `level` the intervals' (speaker or utterance)."""
    final_epoch, final = scored[FINAL]
    paper_epoch = paper_epoch_for(strategy, final_epoch)
    paper = paper_row(strategy, paper_epoch)
    final_ci = final["intervals"]
    flat = {**_with_ci(flat_metrics(final["metrics"]), final_ci, WITH_CI), **_extra_apa(final_ci),
            **{f"{a}_pcc_unparsed_worst": round_metric(final["metrics"][f"{a}_pcc_unparsed_worst"])
               for a in APA_FIELDS}}
    per_epoch = [(epoch, s) for ckpt, (epoch, s) in scored.items() if ckpt != FINAL and epoch is not None]
    # per epoch only the headline with its intervals, the parse rate and the paper's row of that
    # epoch and strategy (none where Table 3 has no such epoch), so `dvc metrics show` stays readable
    epochs = {}
    for epoch, s in sorted(per_epoch, key=lambda e: e[0]):
        ours, theirs = flat_metrics(s["metrics"], EPOCH_KEYS), paper_row(strategy, epoch)
        epochs[str(epoch)] = {**_with_ci(ours, s["intervals"], WITH_CI), "paper": theirs,
                              "diff": diff_from_paper(ours, theirs), "verdict": paper_verdicts(s["intervals"], theirs)}
    return {**flat, "epoch": final_epoch, "n_utterances": final["n_utterances"], "interval_level": level,
            "paper_epoch": paper_epoch, "paper": paper, "diff": diff_from_paper(flat, paper),
            "verdict": paper_verdicts(final_ci, paper), "epochs": epochs}
