"""Assess your own recordings with a trained adapter: the Python API behind `pronounce assess`.

    from pronounce.assess.api import Assessor, Recording
    assessor = Assessor("models/pretrained_r320")          # loads the model once
    results = assessor.assess([Recording("my.wav", "We call it bear")])

Each result (pronounce.assess.report.result) holds the APA scores as the model answers them, the
MDD transcript and phones, the expected text's CMUdict phones and the per-word diff, or a one-line
`error` for a recording that cannot be used (the others still run). The pipeline's own code paths:
audio read by `audio.decode_audio` (as the decode stage reads it: resampled with soxr, downmixed,
16-bit, `data.max_seconds`), the model loaded by evaluate's loader (base model + PeftModel),
answers from evaluate's `Generator` and read by `parse.parse_output`. Why: docs/assess.md.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import PipelineError
from ..data.audio import SAMPLE_RATE, AudioError, decode_audio, to_float
from ..evaluation.generation import Generator, make_batches
from ..task.prompts import TASKS, user_turn
from ..training.checkpoints import ADAPTER_FILES

# A peak below -60 dBFS (33 of 32768) is the noise floor of a silent room or a muted input,
# not speech: the model would answer something for it, so it is refused instead.
SILENCE_PEAK = 33
# Clips are decoded a chunk at a time, so memory holds at most this many (~1 MB per 30 s clip),
# however long the manifest; each chunk is sorted by length for batching.
CHUNK = 128


class AssessError(PipelineError):
    """An input `pronounce assess` cannot work with as a whole (model folder, text, manifest)."""


@dataclass(frozen=True)
class Recording:
    path: str
    text: str
    manifest: str | None = None  # the manifest that named it, for the path rule in a missing file's error


def load_clip(path, max_seconds: float, min_samples: int) -> np.ndarray:
    """A recording as the decode stage stores it, read back as float32 at 16 kHz; AudioError if
    unreadable, empty, too long (`max_seconds`), shorter than one feature window, or silent."""
    pcm = decode_audio(str(path), max_seconds).samples
    if pcm.size < min_samples:
        raise AudioError("too_short", f"{pcm.size} samples, fewer than one {min_samples}-sample analysis window")
    peak = int(np.abs(pcm.astype(np.int32)).max())
    if peak < SILENCE_PEAK:
        raise AudioError("silent_audio", f"peak {peak}/32768, below -60 dBFS")
    return to_float(pcm)


MANIFEST_RULE = "relative audio paths are taken from the manifest's own folder, not the current directory"


def read_manifest(path) -> list[Recording]:
    """CSV rows `path,text` (a header row `path,text` is allowed); relative audio paths are taken
    from the manifest's folder (MANIFEST_RULE). Every row must name a file and a text: the first
    that does not is an AssessError naming its line."""
    import csv

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(enumerate(csv.reader(f), 1))
    except (OSError, UnicodeDecodeError) as e:
        raise AssessError(f"manifest {path}: cannot read it ({e})") from None
    rows = [(n, r) for n, r in rows if any(cell.strip() for cell in r)]
    if rows and [c.strip().lower() for c in rows[0][1]] == ["path", "text"]:
        rows = rows[1:]
    if not rows:
        raise AssessError(f"manifest {path} has no recordings: expected CSV rows path,text")
    out = []
    for n, row in rows:
        if len(row) != 2:
            raise AssessError(f"manifest {path} line {n}: expected 2 columns path,text, got {len(row)} "
                              "(quote a text that holds commas)")
        audio, text = row[0].strip(), row[1].strip()
        if not audio:
            raise AssessError(f"manifest {path} line {n}: no audio path")
        check_text(text, f"manifest {path} line {n}")
        out.append(Recording(str(path.parent / audio), text, None if Path(audio).is_absolute() else str(path)))
    return out


def check_text(text, where: str, example: str = '--text "We call it bear"') -> None:
    from ..scoring.metrics import normalise_words

    if not text or not normalise_words(text):
        raise AssessError(f"{where}: no expected text (the sentence the speaker read), e.g. {example}")


def find_adapter(model) -> tuple[Path, Path]:
    """(adapter folder, config folder) for models/<config> or one of its adapter folders
    (models/<config>/adapter, models/<config>/epoch-<k>); AssessError for anything else."""
    folder = Path(model)
    if not folder.is_dir():
        raise AssessError(f"--model {folder}: no such folder (expected models/<config> after `dvc repro`)")
    if (folder / ADAPTER_FILES[0]).is_file():  # an adapter folder itself: models/<config>/epoch-<k>
        adapter, config_dir = folder, folder.parent
    else:
        adapter, config_dir = folder / "adapter", folder
    missing = [f for f in ADAPTER_FILES if not (adapter / f).is_file()]
    if missing:
        raise AssessError(f"--model {folder} is not an adapter trained by this pipeline: no {adapter / missing[0]} "
                          "(expected models/<config> after `dvc repro`)")
    try:
        peft_type = json.loads((adapter / ADAPTER_FILES[0]).read_text(encoding="utf-8")).get("peft_type")
    except (ValueError, AttributeError):
        peft_type = None
    if peft_type != "LORA":
        raise AssessError(f"--model {folder}: {adapter / ADAPTER_FILES[0]} is not a LoRA adapter config")
    return adapter, config_dir


def find_base(config_dir: Path, base=None) -> tuple[str, str | None, str | None, dict | None]:
    """(source, revision, attention implementation or None for the loader's default, base.json or
    None) of the base model: `base` (a folder with base.json, i.e. models/base, or a model folder
    or Hub id), else the models/base beside the config folder."""
    from ..model.manifest import MANIFEST, base_attn_implementation, read_manifest, resolve_base

    folder = Path(base) if base is not None else config_dir.parent / "base"
    if (folder / MANIFEST).is_file():
        return (*resolve_base(folder), base_attn_implementation(folder), read_manifest(folder))
    if base is not None:
        return str(base), None, None, None
    raise AssessError(f"no base model for {config_dir}: {folder / MANIFEST} not found "
                      "(run `dvc repro base`, or pass --base)")


# Messages the libraries print on every load of this model, each harmless here: transformers'
# advice to restate the real config's long-RoPE `original_max_position_embeddings` as a `factor`
# (a field of the real model's config, which the tiny model keeps), and PEFT's reading of a property transformers
# deprecated (`is_gradient_checkpointing`, read once when the adapter is attached).
ROPE_ADVICE = "This model config has set a `rope_parameters['original_max_position_embeddings']` field"
DEPRECATED_PROPERTY = r"`is_gradient_checkpointing` is deprecated"


def quiet_known_noise() -> None:
    """Filter those two messages where they are emitted (their logger and warning), and the
    weight-loading progress bar, so a command's standard error holds only its own lines; any other
    warning or error of the libraries still shows. For the commands' processes, not the library."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    logging.getLogger("transformers.modeling_rope_utils").addFilter(
        lambda record: not record.getMessage().startswith(ROPE_ADVICE))
    warnings.filterwarnings("ignore", message=DEPRECATED_PROPERTY, category=FutureWarning)
    hf_logging.disable_progress_bar()


class Assessor:
    """Loads base model + adapter once; `assess(recordings)` answers both tasks for each.

    `params`: the pipeline's params (a pronounce.core.params.Params or a params.yaml path) for
    `data.max_seconds` and `eval.batch_size` / `eval.max_new_tokens`, so the command checks and
    generates exactly as the pipeline does. The process's torch settings (threads, determinism) are left to the caller.
    """

    def __init__(self, model, base=None, params="params.yaml"):
        from ..core.params import Params, load_params
        from ..evaluation.generation import load_model
        from ..model.processor import load_processor

        p = params if isinstance(params, Params) else load_params(params)
        self.max_seconds = p.data.max_seconds
        self.batch_size = p.eval.batch_size
        from .explain import model_card

        adapter, config_dir = find_adapter(model)
        source, revision, attn, manifest = find_base(config_dir, base)
        self.card = model_card(adapter, config_dir, manifest, source)  # read before loading: says what answers
        try:
            processor = load_processor(source, revision)
            self.model = load_model(source, revision, processor, adapter, attn_implementation=attn)
        except (OSError, ValueError, RuntimeError) as e:  # a missing base, or an adapter that does not fit it
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise AssessError(f"cannot load {adapter} on the base model {source}: {first}") from None
        self.adapter = adapter
        self.prompts = {task: user_turn(task, processor.audio_token) for task in TASKS}
        self.min_samples = int(processor.audio_processor.win_length)
        self.generate = Generator(self.model, processor, lambda row: row["audio"], p.eval.max_new_tokens)

    def assess(self, recordings, progress=False) -> list[dict]:
        """One result per recording, in the given order; AssessError first if a text is missing."""
        from tqdm import tqdm

        recordings = list(recordings)
        for rec in recordings:
            check_text(rec.text, f"recording {rec.path}")
        bar = tqdm(total=2 * len(recordings), desc="assess", unit="answer", disable=not progress, file=sys.stderr)
        results = []
        for start in range(0, len(recordings), CHUNK):
            results += self._chunk(recordings[start:start + CHUNK], bar)
        bar.close()
        return results

    def _chunk(self, recordings, bar) -> list[dict]:
        from .report import result

        clips, errors = {}, {}
        for k, rec in enumerate(recordings):
            try:
                clips[k] = load_clip(rec.path, self.max_seconds, self.min_samples)
            except AudioError as e:
                missing = rec.manifest and e.reason == "unreadable_audio" and not Path(rec.path).exists()
                errors[k] = f"{e} ({MANIFEST_RULE}: {rec.manifest})" if missing else str(e)
                bar.update(2)
        # Evaluate's order: one task per batch (the prompts differ in length), clips by length
        # (little padding), then input order.
        by_length = sorted(clips, key=lambda k: (clips[k].size, k))
        answers = {}
        for task in TASKS:
            rows = [{"utt_id": k, "task": task, "prompt": self.prompts[task], "audio": clips[k]} for k in by_length]
            for batch in make_batches(rows, self.batch_size):
                for g in self.generate(batch):
                    answers[g["utt_id"], g["task"]] = g
                bar.update(len(batch))
        return [result(rec.path, rec.text, error=errors[k], model=self.card) if k in errors else
                result(rec.path, rec.text, clips[k].size / SAMPLE_RATE, answers[k, "apa"], answers[k, "mdd"],
                       model=self.card)
                for k, rec in enumerate(recordings)]
