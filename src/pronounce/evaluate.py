"""Stage `evaluate`: greedy generation on the test split, both tasks, for one trained config
(its final adapter and the per-epoch adapters `eval.epochs` selects) or for the untrained
base model (the paper's "no training" row, epoch 0). The base model is evaluated WITH its speech
LoRA: the shipped model switches that adapter on for every audio input, so the bare base
model is not how the model hears (BASE_LABEL names the row).

Outputs, under predictions/<config>/ (predictions/base/ for the base model):
  final.jsonl, epoch-<k>.jsonl   one JSON object per test instance, sorted by (utt_id, task):
                                 utt_id, task, checkpoint, epoch, raw (the generated text, up to
                                 but excluding the stop token), n_tokens, stopped ("eos" or
                                 "max_new_tokens"), status, flags, fields (pronounce.parse)
  summary.json                   what generated them (`model`: BASE_LABEL for the base model),
                                 the checkpoints, their adapter hashes, cache keys, which
                                 generations were shared, and the parse summaries
Every file is byte-identical on a rerun (sorted keys, stable order, no wall-clock values).
Scoring (pronounce.score) reads only these files, so any metric can be recomputed without
generating again.

Generation: instances sorted by task, then clip duration (then utt_id), and cut into batches of
`eval.batch_size`; left padding; greedy; stops at the generation config's eos (`<|end|>`,
`<|endoftext|>`) or after `eval.max_new_tokens`; the audio/image placeholders are suppressed.
The audio encoder's padding mask is weak, so a clip's output may depend on its batch-mates:
batch size 1 is exact, and the batch size is part of every cache key. On a CPU the key/value
cache is preallocated for prompt + max_new_tokens (`growing_cache`): the same values as
transformers' default cache, without copying the whole cache at every step.

Cache: generations are kept in runs/eval-cache/ (not a DVC output: DVC deletes a stage's outs
before rerunning it), keyed by the hash of (adapter files, base model folder, eval params that
shape generation, test set, library versions, GENERATION_VERSION). A finished checkpoint is one
file written atomically; a checkpoint interrupted midway resumes from its last finished batch
(`<key>.partial.jsonl`, one line per batch; the batches are a deterministic split, so the rest
is generated exactly as it would have been). A final adapter byte-identical to an epoch's is
generated once.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts import atomic_dir, dir_digest, file_digest, write_json
from .errors import ParamsError, PipelineError

# Bump when the meaning of a cached generation changes (decoding, stop rule, batching order):
# old cache entries then stop matching.
GENERATION_VERSION = 3  # 2: batches grouped by task (a prompt length per batch); 3: never mixed at the border
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
BASE_NAME = "base"  # predictions/base/: the untrained base model, epoch 0
BASE_LABEL = "base + speech LoRA (no training)"  # what predictions/base/ was generated with
FINAL = "final"


class EvalError(PipelineError):
    """Something the evaluate stage cannot work with (missing adapters, bad epoch selection)."""


# --------------------------------------------------------------------------- checkpoints


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
    if isinstance(spec, list):
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


# --------------------------------------------------------------------------- instances


def test_instances(materialized_dir) -> list[dict]:
    """The test split's instances (utt_id, task, prompt, audio_row, duration), generation order:
    sorted by task, then clip duration, then utt_id: a batch holds one task's prompts (the APA prompt
    is ~380 tokens longer than the MDD one), so little of it is padding."""
    from .materialize import load_instances

    ds = load_instances(materialized_dir, "test").select_columns(["utt_id", "task", "prompt", "audio_row", "duration"])
    rows = ds.to_list()
    if not rows:
        raise EvalError(f"{materialized_dir}/test.arrow has no instances")
    keys = [(r["utt_id"], r["task"]) for r in rows]
    if len(set(keys)) != len(keys):
        raise EvalError(f"{materialized_dir}/test.arrow has duplicate (utt_id, task) instances")
    return sorted(rows, key=lambda r: (r["task"], r["duration"], r["utt_id"]))


def make_batches(rows: list[dict], batch_size: int) -> list[list[dict]]:
    """Consecutive rows in batches of `batch_size`, never mixing tasks: each task's last batch may
    be short (rows come sorted by task, so a plain cut would mix APA and MDD prompts)."""
    batches = []
    for i, row in enumerate(rows):
        if not batches or len(batches[-1]) == batch_size or batches[-1][-1]["task"] != row["task"]:
            batches.append([])
        batches[-1].append(row)
    return batches


# --------------------------------------------------------------------------- cache


def cache_key(adapter: str, base: str, gen_params: dict, test: str) -> tuple[str, dict]:
    """(key, what it hashes): everything a cached generation depends on."""
    import peft
    import torch
    import transformers

    parts = {
        "adapter": adapter,
        "base": base,
        "eval": gen_params,
        "test": test,
        "generation_version": GENERATION_VERSION,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24], parts


class GenerationCache:
    """runs/eval-cache/<key>.jsonl (finished) and <key>.partial.jsonl (batches so far)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def _path(self, key, suffix=".jsonl") -> Path:
        return self.folder / f"{key}{suffix}"

    def load(self, key: str, expected: set) -> list[dict] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        except ValueError:
            return None
        if {(r["utt_id"], r["task"]) for r in rows} != expected or len(rows) != len(expected):
            return None  # not this test set after all: regenerate
        return rows

    def load_partial(self, key: str, batches: list[list[dict]]) -> dict[int, list[dict]]:
        """Finished batches of an interrupted run, by index; a torn last line is ignored."""
        path = self._path(key, ".partial.jsonl")
        done = {}
        if not path.is_file():
            return done
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                b, rows = entry["batch"], entry["rows"]
            except (ValueError, KeyError, TypeError):
                continue
            if not isinstance(b, int) or not 0 <= b < len(batches):
                continue
            if [(r["utt_id"], r["task"]) for r in rows] == [(r["utt_id"], r["task"]) for r in batches[b]]:
                done[b] = rows
        return done

    def append_partial(self, key: str, b: int, rows: list[dict]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self._path(key, ".partial.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"batch": b, "rows": rows}, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def store(self, key: str, rows: list[dict], meta: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in _sorted(rows)), encoding="utf-8")
        tmp.replace(path)
        write_json(self._path(key, ".meta.json"), meta)
        self._path(key, ".partial.jsonl").unlink(missing_ok=True)


def _sorted(rows):
    return sorted(rows, key=lambda r: (r["utt_id"], r["task"]))


# --------------------------------------------------------------------------- generation


class Generator:
    """Batched greedy generation with one model (base or base + adapter)."""

    def __init__(self, model, processor, audio_lookup, max_new_tokens: int):
        import torch

        from .collator import PronunciationCollator
        from .model import suppressed_token_ids

        self.model = model
        self.tokenizer = processor.tokenizer
        self.collator = PronunciationCollator(processor, audio_lookup=audio_lookup)
        self.max_new_tokens = max_new_tokens
        gc = model.generation_config
        eos = gc.eos_token_id
        self.eos = [eos] if isinstance(eos, int) else list(eos or [])
        if not self.eos:
            raise EvalError("the base model's generation_config has no eos_token_id: generation would never stop")
        self.pad = gc.pad_token_id if gc.pad_token_id is not None else self.eos[0]
        self.suppress = suppressed_token_ids(processor)
        self.device = next(model.parameters()).device
        self.dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        self._torch = torch

    def _cache_kwargs(self, prompt_len: int) -> dict:
        """On a CPU, a key/value cache preallocated for the whole generation (`growing_cache`):
        byte-identical generations, without the default cache's copy of itself at every step.
        On a GPU that copy is cheap and generate keeps its default cache (numerics unchanged)."""
        if self.device.type != "cpu" or self.model.generation_config.cache_implementation is not None:
            return {}
        from .kvcache import growing_cache

        return {"cache": growing_cache(self.model.config, prompt_len + self.max_new_tokens)}

    def __call__(self, rows: list[dict]) -> list[dict]:
        torch = self._torch
        batch = self.collator.collate_for_generation(rows)
        batch = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                 for k, v in batch.items()}
        with torch.inference_mode():
            out = self.model.generate(
                **batch,
                **self._cache_kwargs(batch["input_ids"].shape[1]),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=self.eos,
                pad_token_id=self.pad,
                suppress_tokens=self.suppress or None,
            )
        prompt_len = batch["input_ids"].shape[1]
        results = []
        for i, row in enumerate(rows):
            tokens = out[i, prompt_len:].tolist()
            stop = next((j for j, t in enumerate(tokens) if t in self.eos), None)
            kept = tokens if stop is None else tokens[:stop]
            results.append({
                "utt_id": row["utt_id"],
                "task": row["task"],
                "raw": self.tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False),
                "n_tokens": len(kept),
                "stopped": "max_new_tokens" if stop is None else "eos",
            })
        return results


def generate_checkpoint(generate, batches, cache: GenerationCache, key: str, desc: str, progress=True) -> list[dict]:
    """All batches of one checkpoint, resuming from the partial cache; one partial line per batch."""
    from tqdm import tqdm

    done = cache.load_partial(key, batches)
    rows = [r for b in sorted(done) for r in done[b]]
    todo = [b for b in range(len(batches)) if b not in done]
    bar = tqdm(total=sum(len(b) for b in batches), initial=len(rows), desc=desc, unit="inst",
               disable=not progress, file=sys.stderr)
    for b in todo:
        got = generate(batches[b])
        cache.append_partial(key, b, got)
        rows += got
        bar.update(len(got))
    bar.close()
    return rows


def prediction_rows(ckpt: Checkpoint, generations: list[dict]) -> list[dict]:
    from .parse import parse_output

    rows = []
    for g in _sorted(generations):
        result = parse_output(g["task"], g["raw"])
        rows.append({
            "utt_id": g["utt_id"], "task": g["task"], "checkpoint": ckpt.name, "epoch": ckpt.epoch,
            "raw": g["raw"], "n_tokens": g["n_tokens"], "stopped": g["stopped"],
            "status": result.status, "flags": list(result.flags), "fields": result.fields,
        })
    return rows


def write_jsonl(path, rows) -> None:
    Path(path).write_text("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows),
                          encoding="utf-8")


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]


# --------------------------------------------------------------------------- the stage


def _deterministic(seed: int, mode: str) -> None:
    from .determinism import set_determinism

    set_determinism(seed, mode)  # the same switch as training's (eval.determinism)


def _load_model(source, revision, processor, adapter: Path | None, speech_lora: bool = False,
                attn_implementation: str | None = None):
    """The base model with `adapter` (a trained adapter folder; with `speech_lora`, the base
    model's own speech LoRA), in inference mode."""
    import torch

    from .guards import check_audio_token
    from .model import check_vocab, load_base_model, load_speech_lora

    attn = {"attn_implementation": attn_implementation} if attn_implementation else {}  # else the loader's default
    model = load_base_model(source, revision, **attn)
    check_audio_token(model, processor)
    check_vocab(model, processor)
    if speech_lora:
        model = load_speech_lora(model, source, revision)
    elif adapter is not None:
        from peft import PeftModel

        # restores the LoRA, any modules_to_save and the control tokens' trainable rows
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model.eval()


def gen_params(params: dict) -> dict:
    """The eval params that shape a generation (and so key the cache; the thread count may change
    a CPU's floating-point summation order)."""
    e = params["eval"]
    return {"batch_size": e["batch_size"], "max_new_tokens": e["max_new_tokens"], "cpu_threads": e["cpu_threads"]}


def _threads(n: int) -> None:
    import torch

    if n and not torch.cuda.is_available():
        torch.set_num_threads(n)


def run_evaluate(params: dict, name: str, base_dir, decoded_dir, materialized_dir, model_dir, out_dir,
                 cache_dir="runs/eval-cache", progress=True, log=print) -> dict:
    """Evaluate config `name` (adapters under `model_dir`), or the base model when `model_dir` is
    None (then `name` is only the label). Returns the summary written to out_dir/summary.json."""
    from .artifacts import AudioStore
    from .base import base_attn_implementation, resolve_base
    from .model import load_processor, speech_lora_path
    from .params import eval_epochs_spec
    from .parse import ParseResult, summarise

    started = time.perf_counter()
    _deterministic(params["seed"], params["eval"]["determinism"])
    _threads(params["eval"]["cpu_threads"])
    source, revision = resolve_base(base_dir)
    if model_dir is None:
        folder = speech_lora_path(source, revision)
        checkpoints = [Checkpoint("epoch-0", 0, folder, adapter_digest(folder), speech_lora=True)]
    else:
        checkpoints = find_checkpoints(model_dir, eval_epochs_spec(params))

    instances = test_instances(materialized_dir)
    expected = {(r["utt_id"], r["task"]) for r in instances}
    batches = make_batches(instances, params["eval"]["batch_size"])
    test_hash = file_digest([Path(materialized_dir) / "test.arrow", Path(decoded_dir) / "test.arrow"])
    base_hash = dir_digest(base_dir)
    gp = gen_params(params)
    cache = GenerationCache(cache_dir)
    store = AudioStore(Path(decoded_dir) / "test.arrow")
    processor = None
    stats = {"generated": [], "cached": [], "shared": []}

    by_name = {}
    for ckpt in checkpoints:
        ckpt.key, key_parts = cache_key(ckpt.digest, base_hash, gp, test_hash)
        if ckpt.same_as is not None:
            ckpt.rows = by_name[ckpt.same_as].rows
            stats["shared"].append(ckpt.name)
        else:
            rows = cache.load(ckpt.key, expected)
            if rows is not None:
                stats["cached"].append(ckpt.name)
            else:
                if processor is None:
                    processor = load_processor(source, revision)
                model = _load_model(source, revision, processor, ckpt.folder, ckpt.speech_lora,
                                     base_attn_implementation(base_dir))
                generate = Generator(model, processor, lambda row: store[row["audio_row"]], gp["max_new_tokens"])
                rows = generate_checkpoint(generate, batches, cache, ckpt.key, f"evaluate {name} {ckpt.name}",
                                           progress)
                del model, generate
                cache.store(ckpt.key, rows, {"checkpoint": f"{name}/{ckpt.name}", **key_parts})
                stats["generated"].append(ckpt.name)
            ckpt.rows = rows
        by_name[ckpt.name] = ckpt

    summary = {"config": name, "model_base": params["model"]["base"],
               "model": BASE_LABEL if model_dir is None else f"base + {name} adapter", "eval": gp,
               "epochs_param": eval_epochs_spec(params) if model_dir is not None else None,
               "test_instances": len(instances), "checkpoints": []}
    with atomic_dir(out_dir) as tmp:
        for ckpt in checkpoints:
            rows = prediction_rows(ckpt, ckpt.rows)
            write_jsonl(tmp / f"{ckpt.name}.jsonl", rows)
            parse = {task: summarise(ParseResult(r["fields"], r["status"], tuple(r["flags"]))
                                     for r in rows if r["task"] == task)
                     for task in ("apa", "mdd")}
            summary["checkpoints"].append({
                "name": ckpt.name, "epoch": ckpt.epoch, "file": f"{ckpt.name}.jsonl",
                "adapter": ckpt.folder.name,  # adapter, epoch-<k>, or the base model's speech-lora
                "adapter_sha256": ckpt.digest, "cache_key": ckpt.key, "same_as": ckpt.same_as,
                "truncated": sum(r["stopped"] == "max_new_tokens" for r in rows),
                "parse": parse,
            })
        write_json(tmp / "summary.json", summary)
    seconds = time.perf_counter() - started
    # Wall-clock figures vary run to run: logged, and kept out of the DVC outputs.
    timing = {"config": name, "seconds": round(seconds, 2), **stats}
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(cache_dir) / f"timing-{name}.json", timing)
    if log:
        log(f"evaluate {name}: {len(checkpoints)} checkpoint(s) x {len(instances)} instances; "
            f"generated {stats['generated'] or 'none'}, from cache {stats['cached'] or 'none'}, "
            f"shared {stats['shared'] or 'none'}; {seconds:.1f} s")
    return summary
