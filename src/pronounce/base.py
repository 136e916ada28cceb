"""Stage `base`: make the base model named by `model.base` available to later stages.

`builtin:tiny` is built into models/base/ (deterministic from `seed`, so its hash is stable);
a Hub id or a folder of the real model is recorded in models/base/base.json (with its
revision) and loaded from there. Later stages only ever call `resolve_base()`, so they never
know which world they run in.
"""

import json
from pathlib import Path

from .artifacts import atomic_dir, write_json
from .errors import ParamsError
from .model import BUILTIN_TINY, _check_model_folder, _local_folder, build_tiny_model

MANIFEST = "base.json"


def check_base(base: str) -> None:
    """Fail early, naming the key, when model.base is a local folder without a model in it."""
    if base.startswith("builtin:"):
        if base != BUILTIN_TINY:
            raise ParamsError(f"params.yaml: model.base {base!r} is unknown; the built-in model is {BUILTIN_TINY!r}")
        return
    try:
        local = _local_folder(base)
        if local is not None:
            _check_model_folder(local)
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        raise ParamsError(f"params.yaml: model.base: {e}") from None


def run_base(base: str, revision: str | None, seed: int, out_dir, tokenizer_corpus=None) -> dict:
    check_base(base)
    with atomic_dir(out_dir) as tmp:
        if base == BUILTIN_TINY:
            kwargs = {"corpus_dir": tokenizer_corpus} if tokenizer_corpus else {}
            build_tiny_model(tmp, seed, **kwargs)
            manifest = {"base": base, "seed": seed, "source": "."}
        else:
            manifest = {"base": base, "revision": revision, "source": base}
        write_json(tmp / MANIFEST, manifest)
    return manifest


def resolve_base(base_dir="models/base") -> tuple[str, str | None]:
    """(source, revision) to pass to pronounce.model's loaders."""
    base_dir = Path(base_dir)
    manifest = json.loads((base_dir / MANIFEST).read_text(encoding="utf-8"))
    if manifest["source"] == ".":
        return str(base_dir), None
    return manifest["source"], manifest.get("revision")
