"""The report stage's plot data (`dvc plots show`): ours against the paper's targets
(metrics/plots/vs_paper.json) and the training loss per config (metrics/plots/train_loss.json).
Kept apart from pronounce.scoring.report, which writes them: its markdown uses none of this.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.params import BUILTIN_TINY, ReportJob
from .paper import JUDGED_BY, PAPER_STYLE_SHORT, PAPER_TARGET_EPOCH, TABLE3_COLUMNS, judged_label


def _tsv(path, column: str) -> pd.DataFrame:
    """One DVCLive metric file: step -> value. The dtypes are fixed (a column of whole numbers
    would read as int: JSON 1, not 1.0), and pandas 3's default parser reads floats as float()
    does, bit for bit, so train_loss.json keeps the bytes of the csv-module reader before it."""
    return pd.read_csv(path, sep="\t", usecols=["step", column], dtype={"step": "int64", column: "float64"})


def read_loss(dvclive_dir, name) -> list[dict]:
    """Training loss of one config from DVCLive's TSV files, each step with its epoch (None where
    epoch.tsv lacks the step or is absent); [] when the config logged no loss."""
    folder = Path(dvclive_dir) / name / "plots" / "metrics" / "train"
    if not (folder / "loss.tsv").is_file():
        return []
    loss = _tsv(folder / "loss.tsv", "loss")
    if (folder / "epoch.tsv").is_file():
        loss = loss.merge(_tsv(folder / "epoch.tsv", "epoch").drop_duplicates("step", keep="last"), on="step", how="left")
    else:
        loss["epoch"] = float("nan")
    # NaN (no epoch logged for the step) -> None: JSON null, not the invalid NaN
    loss["epoch"] = loss["epoch"].astype(object).where(loss["epoch"].notna(), None)
    return loss.assign(config=name)[["config", "step", "epoch", "loss"]].to_dict("records")


def run_label(job: ReportJob) -> str:
    """What produced our numbers, in a line the plots carry (a smoke run says it is not a reproduction)."""
    if job.model.base == BUILTIN_TINY:
        return f"SMOKE RUN, NOT A REPRODUCTION: {BUILTIN_TINY}, {job.corpus}, profile {job.profile}"
    return f"{job.model.base}, {job.corpus}, profile {job.profile}"


def vs_paper_rows(details: dict[str, dict], run: str = "") -> list[dict]:
    """Plot data: each config's final adapter and the paper's row it stands beside, per metric; ours
    with its 95% interval (`low`, `high`: None where there is none, e.g. too few events), every row
    with `run` (run_label), which the plot prints above the bars."""
    rows = []
    for name, d in details.items():
        m = d["metrics"]
        epoch = m.get("epoch")
        for key, _ in TABLE3_COLUMNS:
            ours = JUDGED_BY[key]  # the metric of ours the paper's number is judged against
            label = judged_label(key)  # "precision (paper-style)": the panel says what ours is
            note = None if ours == key else PAPER_STYLE_SHORT
            if m.get(ours) is not None:
                ci = m.get(f"{ours}_ci") or {}
                rows.append({"metric": label, "ours_metric": ours, "note": note, "config": name, "source": "ours",
                             "series": f"{name} (e{epoch if epoch is not None else '?'})",
                             "value": m[ours], "low": ci.get("low"), "high": ci.get("high"), "run": run})
            if (m.get("paper") or {}).get(key) is not None:
                rows.append({"metric": label, "ours_metric": ours, "note": note, "config": name, "source": "paper",
                             "series": f"paper {d['strategy']} (e{m.get('paper_epoch', PAPER_TARGET_EPOCH)})",
                             "value": m["paper"][key], "low": None, "high": None, "run": run})
    # one paper bar per (metric, series) even when two configs share a strategy
    seen, out = set(), []
    for r in rows:
        k = (r["metric"], r["series"])
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out
