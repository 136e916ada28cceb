"""Stage `base`: make the base model named by `model.base` available to later stages.

- `builtin:tiny` is built into models/base/ (deterministic from `seed`, so its hash is stable).
- A Hub id is referenced in models/base/base.json with the revision asked for (None = the known
  native-layout revision, `model.default_revision`) AND the commit it resolved to, after checking
  its config is the native layout: later stages load that commit, not the moving branch. With a
  commit pinned, or the revision in the Hugging Face cache, nothing is requested from the Hub.
- A local folder in the native layout is referenced; a local copy of the Hub's `main` (the
  remote-code layout, `phi4mm`) is converted into models/base/ (pronounce.model.convert), so its
  native form is a content-hashed DVC output.
Every manifest records `attn_implementation`: a change moves models/base's hash, so the stages
that load the model rerun. Later stages read the manifest through pronounce.model.manifest, so
they never know which world they run in. Why: docs/stages.md, `base`.
"""

import json
from pathlib import Path

from ..core.artifacts import atomic_dir, write_json
from ..core.errors import ParamsError
from ..core.params import BUILTIN_TINY
from .loader import (
    DEFAULT_ATTN_IMPLEMENTATION,
    NATIVE_MODEL_TYPE,
    REMOTE_MODEL_TYPE,
    LayoutError,
    check_model_folder,
    check_native_layout,
    default_revision,
    hub_config,
    local_folder,
)
from .manifest import MANIFEST
from .tiny import build_tiny_model


def resolve_commit(repo_id: str, revision: str | None) -> str:
    """The commit a Hub revision (branch, tag, pull-request ref or commit) points at: a commit
    as is and a revision the cache holds from its ref, without the network (pronounce.core.hub);
    else the Hub's answer. A failure is one line naming the fix (`hf download ...`)."""
    from ..core.hub import resolve

    return resolve(repo_id, revision)


def _model_type(folder: Path):
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except ValueError as e:
        raise LayoutError(f"{str(folder / 'config.json')!r} is not valid JSON: {e}") from None


def check_base(base: str) -> None:
    """Fail early, naming the key, when model.base is a local folder without a usable model."""
    if base.startswith("builtin:"):
        if base != BUILTIN_TINY:
            raise ParamsError(f"params.yaml: model.base {base!r} is unknown; the built-in model is {BUILTIN_TINY!r}")
        return
    try:
        local = local_folder(base)
        if local is not None:
            check_model_folder(local)
            if _model_type(local) != REMOTE_MODEL_TYPE:  # the remote-code layout is converted
                check_native_layout(local)
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        raise ParamsError(f"params.yaml: model.base: {e}") from None


def run_base(base: str, revision: str | None, seed: int, out_dir, tokenizer_corpus=None,
             attn_implementation: str = DEFAULT_ATTN_IMPLEMENTATION) -> dict:
    check_base(base)
    with atomic_dir(out_dir) as tmp:
        if base == BUILTIN_TINY:
            kwargs = {"corpus_dir": tokenizer_corpus} if tokenizer_corpus else {}
            build_tiny_model(tmp, seed, **kwargs)
            manifest = {"base": base, "seed": seed, "source": "."}
        elif (local := local_folder(base)) is not None:
            if _model_type(local) == NATIVE_MODEL_TYPE:
                manifest = {"base": base, "revision": None, "source": base}
            else:
                from .convert import convert_checkpoint

                summary = convert_checkpoint(local, tmp)
                manifest = {"base": base, "source": ".", "conversion": summary}
        else:
            asked = default_revision(base, revision)
            commit = resolve_commit(base, asked)
            try:
                check_native_layout(hub_config(base, commit))
            except LayoutError as e:
                raise LayoutError(f"{base} at revision {asked or 'main'} ({commit}): {e}") from None
            manifest = {"base": base, "revision": asked, "commit": commit, "source": base}
        manifest["attn_implementation"] = attn_implementation
        write_json(tmp / MANIFEST, manifest)
    return manifest
