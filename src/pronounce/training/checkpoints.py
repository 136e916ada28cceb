"""The adapters a trained config left behind, and which of them to evaluate.

models/<config>/ holds the final adapter (adapter/) and one folder per saved epoch (epoch-<k>/),
each ADAPTER_FILES, and TRAINING_RECORD; `eval.epochs` selects the epochs. An adapter is known by the hash of its
files, so a final adapter byte-identical to an epoch's is recognised (and generated once).
No torch here: the train stage imports ADAPTER_FILES without loading a model library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.artifacts import file_digest
from ..core.errors import ParamsError, PipelineError
from ..task.predictions import FINAL

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # what PEFT saves: config, weights
# models/<config>/training.json: what the adapters were trained from (base model, recipe, epochs),
# so `pronounce assess` and `pronounce serve` can say it (a tiny smoke model's answers mean nothing).
TRAINING_RECORD = "training.json"


class EvalError(PipelineError):
    """Something the evaluate stage cannot work with (missing adapters, bad epoch selection)."""


@dataclass
class Checkpoint:
    """One thing to generate with: the base model plus an adapter folder (a trained one, or for
    epoch 0 the base model's own speech LoRA, loaded with model.load_speech_lora)."""

    name: str  # "final", "epoch-<k>", or "epoch-0" for the base model
    epoch: int | None
    folder: Path | None
    digest: str  # sha256 of the adapter files
    speech_lora: bool = False  # folder is the base model's speech-lora/ (its own key layout)
    same_as: str | None = None  # an earlier checkpoint with byte-identical adapter files
    key: str = ""
    rows: list = field(default_factory=list)


def adapter_digest(folder) -> str:
    folder = Path(folder)
    missing = [f for f in ADAPTER_FILES if not (folder / f).is_file()]
    if missing:
        raise EvalError(f"adapter folder {folder} is missing {', '.join(missing)}: run the train stage first")
    return file_digest(folder / f for f in ADAPTER_FILES)


def parse_epochs(spec) -> tuple[str, int | list[int] | None]:
    """`eval.epochs`: "all", "none", "last:<n>" or a list of epoch numbers -> (kind, arg)."""
    if isinstance(spec, (list, tuple)):  # a list in params.yaml, a tuple once loaded (pronounce.core.params)
        if not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in spec):
            raise ParamsError(f"params.yaml: eval.epochs as a list must hold epoch numbers >= 1, got {spec!r}")
        return "list", sorted(set(spec))
    if spec in ("all", "none"):
        return spec, None
    if isinstance(spec, str) and spec.startswith("last:"):
        try:
            n = int(spec[5:])
        except ValueError:
            n = -1
        if n >= 1:
            return "last", n
    raise ParamsError(
        f"params.yaml: eval.epochs must be all, none, last:<n> (n >= 1) or a list of epoch numbers, got {spec!r}"
    )


def select_epochs(spec, available) -> list[int]:
    """The epochs of `available` (the epoch-<k> folders found) that `eval.epochs` asks for."""
    kind, arg = parse_epochs(spec)
    available = sorted(available)
    if kind == "all":
        return available
    if kind == "none":
        return []
    if kind == "last":
        return available[-arg:]
    missing = [e for e in arg if e not in available]
    if missing:
        raise EvalError(f"eval.epochs asks for epoch(s) {missing} but only {available or 'none'} were saved")
    return arg


def find_checkpoints(model_dir, epochs_spec) -> list[Checkpoint]:
    """The final adapter, then the selected epochs in order; byte-identical ones are linked."""
    model_dir = Path(model_dir)
    available = {}
    for d in model_dir.glob("epoch-*"):
        suffix = d.name[len("epoch-"):]
        if d.is_dir() and suffix.isdigit():
            available[int(suffix)] = d
    final_dir = model_dir / "adapter"
    last = max(available) if available else None
    checkpoints = [Checkpoint(FINAL, last, final_dir, adapter_digest(final_dir))]
    for k in select_epochs(epochs_spec, available):
        checkpoints.append(Checkpoint(f"epoch-{k}", k, available[k], adapter_digest(available[k])))
    if last is not None and checkpoints[0].digest != adapter_digest(available[last]):
        checkpoints[0].epoch = None  # the final adapter is not the last epoch's: say so, don't guess
    seen: dict[str, str] = {}
    for ckpt in checkpoints:
        ckpt.same_as = seen.get(ckpt.digest)
        seen.setdefault(ckpt.digest, ckpt.name)
    return checkpoints
