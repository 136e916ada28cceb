"""The predictions files: what the evaluate stage writes and score, report and assess read.

Under predictions/<config>/ (predictions/base/ for the untrained base model):
  final.jsonl, epoch-<k>.jsonl   one JSON object per test instance, sorted by (utt_id, task):
                                 utt_id, task, checkpoint, epoch, raw (the generated text, up to
                                 but excluding the stop token), n_tokens, stopped ("eos" or
                                 "max_new_tokens"), status, flags, fields (pronounce.task.parse, applied by
                                 the evaluate stage)
  summary.json                   what generated them (pronounce.evaluation.evaluate)
Every file is byte-identical on a rerun (sorted keys, stable order, no wall-clock values).
Scoring reads only these files, so any metric can be recomputed without generating again.

A library, not a stage: the scoring and reporting stages import it without importing the
generation stage (and so without its dependencies).
"""

from __future__ import annotations

import json
from pathlib import Path

BASE_NAME = "base"  # predictions/base/: the untrained base model, epoch 0
BASE_LABEL = "base + speech LoRA (no training)"  # what predictions/base/ was generated with
FINAL = "final"  # final.jsonl: the config's final adapter


def sort_rows(rows: list[dict]) -> list[dict]:
    """The files' order: by (utt_id, task)."""
    return sorted(rows, key=lambda r: (r["utt_id"], r["task"]))


def write_jsonl(path, rows) -> None:
    """One JSON object per line, keys sorted, non-ASCII kept as it is (UTF-8)."""
    Path(path).write_text("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows),
                          encoding="utf-8")


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]
