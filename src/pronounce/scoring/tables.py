"""Rows and pipe tables shared by the report's sections (pronounce.scoring.report and
pronounce.scoring.uncertainty): which checkpoints the report lists, and how a table is drawn."""

from __future__ import annotations

import pandas as pd

from ..task.predictions import BASE_LABEL, BASE_NAME, FINAL


def markdown(rows, header: list[str], align: str) -> list[str]:
    """A pipe table with padded columns; `align` has one letter per column, l(eft) or r(ight).
    Cells are shown as given (no number parsing: "0.100" stays "0.100")."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=header, dtype=object)
    return frame.to_markdown(index=False, tablefmt="pipe", disable_numparse=True,
                             colalign=["right" if a == "r" else "left" for a in align]).splitlines()


def config_rows(details: dict) -> list[tuple]:
    """(sort key, epoch label, checkpoint) of one config's own checkpoints (not the base model's).
    The final adapter's row stands for the epoch it is byte-identical to."""
    final = details["checkpoints"][FINAL]
    rows = [(10**9 if final["epoch"] is None else final["epoch"],
             "final" if final["epoch"] is None else f"{final['epoch']} (final)", final)]
    for ckpt, c in details["checkpoints"].items():
        if ckpt != FINAL and not ckpt.startswith(f"{BASE_NAME}/") and c["epoch"] != final["epoch"]:
            rows.append((c["epoch"], str(c["epoch"]), c))
    return sorted(rows, key=lambda r: r[0])


def listed(details: dict[str, dict]) -> list[tuple[str, str, dict]]:
    """(config label, checkpoint label, checkpoint) of every row the report shows: the base model
    once, then each config's checkpoints (an epoch identical to the final adapter only once)."""
    out = []
    first = next(iter(details.values()))
    for ckpt, c in first["checkpoints"].items():
        if ckpt.startswith(f"{BASE_NAME}/"):
            out.append((BASE_LABEL, "epoch 0", c))
    for name, d in details.items():
        for _, label, c in config_rows(d):
            out.append((name, f"epoch {label}", c))
    return out
