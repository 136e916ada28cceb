"""models/base/base.json, what the base stage recorded: where the base model is, at which
commit, loaded with which attention implementation. Every later stage reads it through these
functions (a library, not the stage: they never import the tiny builder or the converter).
"""

import json
from pathlib import Path

from .loader import DEFAULT_ATTN_IMPLEMENTATION, load_base_model

MANIFEST = "base.json"


def read_manifest(base_dir) -> dict:
    return json.loads((Path(base_dir) / MANIFEST).read_text(encoding="utf-8"))


def resolve_base(base_dir="models/base") -> tuple[str, str | None]:
    """(source, revision) to pass to pronounce.model.loader's loaders; for a Hub id the revision is the
    commit the base stage resolved, so every later load reads the same weights."""
    base_dir = Path(base_dir)
    manifest = read_manifest(base_dir)
    if manifest["source"] == ".":
        return str(base_dir), None
    return manifest["source"], manifest.get("commit") or manifest.get("revision")


def base_attn_implementation(base_dir="models/base") -> str:
    """The attention implementation the base stage recorded (params model.attn_implementation)."""
    return read_manifest(base_dir).get("attn_implementation", DEFAULT_ATTN_IMPLEMENTATION)


def load_base(base_dir="models/base", **kwargs):
    """The base model of models/base, loaded strictly with the recorded attention implementation."""
    source, revision = resolve_base(base_dir)
    return load_base_model(source, revision, attn_implementation=base_attn_implementation(base_dir), **kwargs)
