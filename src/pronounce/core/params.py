"""params.yaml, loaded once into typed, frozen objects: one dataclass per section.

(~350 lines, over the ~300 guide: the one place that lists every tunable value, its type and
range, and what each stage receives; split, a reader would chase the schema across files.)

The dataclasses below are the schema. A field's annotation is the type its value must have (a
float field takes an int too; a bool is never a number), its `check` the range, a nested
dataclass a nested section, and `Mapping[str, X]` a section of names the user chooses (configs,
train.recipes). `load_params` checks the YAML against them and builds them in one pass, so a
mistake names its key: unknown keys, missing keys, wrong types and out-of-range values are
errors, never silent defaults. Values are kept as YAML gave them (lists become tuples, mappings
read-only), so a hash of `dataclasses.asdict(...)` equals the hash of the YAML's own section.

How params reach a stage: a stage script (stages/<stage>.py) loads `Params` and hands its
`run_<stage>` only what that stage reads, which is what dvc.yaml's `params` tracks for it:
  decode       data.corpus, max_seconds, max_reject_fraction (as arguments)
  base         model.base, revision, attn_implementation and seed (as arguments)
  materialize  nothing
  train        a TrainJob (Params.train_job): the config, its fresh LoRA (None for a speech-lora
               config), the active recipe (and its name, train.profile), seed, train.num_processes,
               train.determinism
  evaluate     an EvalJob (Params.eval_job): seed, model.base, eval, the epochs for train.profile
  score        a ScoreJob (Params.score_job): the config, model.base, data.corpus, score (its
               min_parse_rate for train.profile, its intervals)
  report       a ReportJob (Params.report_job): the config names, model, data.corpus, train.profile
Jobs are frozen dataclasses too: a test varies one with dataclasses.replace, or edits the YAML's
dict and builds it again with `parse_params` (which validates the edit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from types import MappingProxyType, NoneType, UnionType
from typing import get_args, get_origin, get_type_hints

import yaml

from .errors import ParamsError

# model.base's built-in value: the tiny model the base stage builds (here, not in model.py, so the
# report can name it without importing the model code).
BUILTIN_TINY = "builtin:tiny"
# model.attn_implementation: the attention kernels the loader may be asked for.
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
# No config may take this name: predictions/base/ and score's "base/..." rows are the untrained
# base model's (pronounce.task.predictions.BASE_NAME, not imported: every stage reads params).
RESERVED_CONFIG = "base"


def _about(help: str, check=None, types: tuple | None = None):
    """A field's help text (the params reference in the docs is generated from it), its range
    check `(test, meaning)` (`meaning` completes "must be ..."), and its types where the
    annotation cannot say them."""
    return field(metadata={"help": help, "check": check, "types": types})


def _check(test, meaning: str, help: str, types: tuple | None = None):
    return _about(help, (test, meaning), types)


def _one_of(*values: str, help: str, meaning: str | None = None):
    return _check(lambda v: v in values, meaning or " or ".join(values), help)


def _positive(help: str):
    return _check(lambda v: v > 0, "> 0", help)


def _non_negative(help: str):
    return _check(lambda v: v >= 0, ">= 0", help)


def _fraction(help: str):
    return _check(lambda v: 0 <= v <= 1, "between 0 and 1", help)


def _determinism(help: str):  # pronounce.core.determinism.MODES, not imported: few stages need determinism.py
    return _one_of("seeded", "full", help=help)


def _epochs_ok(v) -> bool:
    """An eval.epochs selection: all, none, last:<n> or a list of epoch numbers."""
    if isinstance(v, str):
        return v in ("all", "none") or (v.startswith("last:") and v[5:].isdigit() and int(v[5:]) >= 1)
    return isinstance(v, list) and all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in v)


# --------------------------------------------------------------------------- the sections


@dataclass(frozen=True)
class DataParams:
    corpus: str = _about(
        "A corpus in the speechocean762 release layout (train/, test/, resource/scores.json, WAVE/), a Hugging Face "
        "dataset saved with save_to_disk, or `hf:<id>[@<revision>]` for a Hub dataset read from the Hugging Face cache"
        " (e.g. hf:mispeech/speechocean762). The corpus stage pins it (a Hub commit, a folder's digest) in "
        "data/corpus.json.")
    max_seconds: float = _positive(
        "Clips longer than this are rejected, each with its reason in data/decoded/report.json.")
    max_reject_fraction: float = _fraction(
        "The decode stage fails when a larger fraction of the utterances is rejected.")


@dataclass(frozen=True)
class ModelParams:
    base: str = _about(
        "`builtin:tiny` (the real architecture shrunk, built locally in seconds), a Hub id, or a local folder of the "
        "real model; a local copy of the Hub's remote-code `main` is converted to the native layout.")
    revision: str | None = _about(
        "The Hub revision (branch, tag or commit); null means the native-layout revision of a known id "
        "(microsoft/Phi-4-multimodal-instruct: refs/pr/70), else the default branch. The base stage records the commit"
        " it resolved to in models/base/base.json.")
    attn_implementation: str = _one_of(
        *ATTN_IMPLEMENTATIONS,
        help="The text decoder's attention kernels (the audio encoder keeps sdpa: it needs a float mask); a "
             "checkpoint's own setting is never used.")


@dataclass(frozen=True)
class LoraParams:
    """The fresh adapter of configs whose init is `fresh`."""
    r: int = _positive("The adapter's rank.")
    alpha: float = _positive("LoRA's scaling numerator (the update is scaled by alpha / r).")
    dropout: float = _fraction("Dropout on the adapter's input.")
    target_modules: str = _about(
        "A regex on module names: the text decoder's projections only, so the audio encoder's modules of the same "
        "names stay frozen.")


@dataclass(frozen=True)
class ConfigParams:
    init: str = _one_of(
        "fresh", "speech-lora",
        help="`fresh`: a new LoRA from the `lora` section; `speech-lora`: the base model's own speech LoRA (r=320), "
             "trained further.")
    # the section the adapter is built from, for dvc.yaml to track: `lora` for a fresh adapter,
    # `model` for the base model's own speech LoRA (nothing in this file but which model)
    lora_params: str = _one_of(
        "lora", "model",
        help="The params section the adapter is built from, for dvc.yaml to track: `lora` for init fresh, `model` for "
             "init speech-lora (so `dvc exp run -S lora.r=320` retrains only the fresh configs).")
    unfreeze_audio: bool = _about(
        "The paper's Unfreeze strategy: also train the audio encoder and the audio projector.")


@dataclass(frozen=True)
class Recipe:
    epochs: int = _positive("Passes over the training split.")
    batch_size: int = _positive("Instances per micro-batch (per process).")
    grad_accum: int = _positive("Micro-batches per optimizer step (the effective batch is batch_size x grad_accum).")
    learning_rate: float = _positive("The peak learning rate.")
    audio_learning_rate: float | None = _check(
        lambda v: v > 0, "> 0 or null",
        "The peak learning rate of the audio encoder and projector where a config trains them (unfreeze_audio), on the"
        " same schedule; null: learning_rate, as the paper trains every weight at one rate.")
    lr_scheduler: str = _about("transformers' scheduler name (linear, cosine, constant, ...).")
    warmup_ratio: float = _fraction("The fraction of the steps spent warming the learning rate up.")
    optim: str = _about("transformers' optimizer name (adamw_torch, ...).")
    max_length: int = _positive("Instances longer than this many tokens are an error, not cut.")
    logging_steps: int = _positive("Optimizer steps between two logged losses (dvclive/<config>/).")
    # A checkpoint (adapter, optimizer, scheduler, RNG and sampler position) every save_steps
    # optimizer steps and at each epoch's end; a rerun after a kill resumes from the newest. A
    # multiple of logging_steps, so a resumed run logs the losses an uninterrupted one does.
    save_steps: int = _positive(
        "A checkpoint (adapter, optimizer, scheduler, RNG, sampler position) every this many optimizer steps and at "
        "each epoch's end; a rerun after a kill resumes from the newest. A multiple of logging_steps.")
    precision: str = _one_of(
        "auto", "bf16", "bf16-any", "fp32", meaning="auto, bf16, bf16-any or fp32",
        help="`auto`: bf16 where the hardware has it, else fp32; `bf16` fails without bf16 hardware; `bf16-any` forces"
             " bf16; `fp32`.")
    gradient_checkpointing: bool = _about("Recompute activations in the backward pass (less memory, more time).")
    train_lm_head: bool = _about(
        "Train the output head too (it is tied to the input embedding, as in the real model; only the control tokens' "
        "rows train otherwise).")
    cpu_threads: int = _non_negative("torch threads when training on a CPU (0: torch's default, one per core).")
    allow_cpu: bool = _about(
        "Whether this recipe may train where torch sees no GPU; false makes the train stage refuse in one line naming "
        "the CUDA wheel.")


@dataclass(frozen=True)
class TrainParams:
    profile: str = _about(
        "The recipe that trains: `smoke` (the embedded default, on a CPU in minutes) or `paper` (section 4.2 of the "
        "paper, for the real model on a GPU).")
    num_processes: int = _positive(
        "More than 1 reruns the train stage as that many DDP processes (accelerate; gloo on a CPU); it must divide "
        "grad_accum.")
    determinism: str = _determinism(
        "`seeded`: seeds, deterministic kernels and cuBLAS; `full`: also synchronous CUDA kernels and an error on any "
        "op without a deterministic kernel (slower, same results).")
    recipes: Mapping[str, Recipe] = _about("The training recipes by name; train.profile picks one.")

    @property
    def recipe(self) -> Recipe:
        """The recipe of train.profile (load_params checked that it exists)."""
        return self.recipes[self.profile]


@dataclass(frozen=True)
class EvalParams:
    batch_size: int = _positive(
        "Clips per generation batch, sorted by duration; a clip's answer does not depend on its batch-mates (the audio"
        " encoder masks each clip's padding).")
    max_new_tokens: int = _positive("An answer still unfinished after this many tokens is cut and flagged.")
    # one selection for every training profile, or {profile: selection} (epochs_for)
    epochs: str | tuple | Mapping = _check(
        lambda v: _epochs_ok(v) or (isinstance(v, dict) and bool(v) and all(map(_epochs_ok, v.values()))),
        "all, none, last:<n> (n >= 1), a list of epoch numbers >= 1, or a mapping from training profile to one "
        "of these",
        "The per-epoch adapters evaluated besides the final one: all, none, last:<n> or a list of epochs, per training "
        "profile (or one value for all). An epoch byte-identical to the final adapter is generated once.",
        types=(str, list, dict))
    cpu_threads: int = _non_negative("torch threads when generating on a CPU (0: torch's default, one per core).")
    determinism: str = _determinism("As train.determinism; it changes no generated token, only speed on CUDA.")

    def epochs_for(self, profile: str):
        """The epochs to evaluate under a training profile: eval.epochs itself, or its entry for
        the profile when it is a mapping (the paper profile reports every epoch, as the paper's
        Table 3 does; the smoke profile its last two)."""
        if not isinstance(self.epochs, Mapping):
            return self.epochs
        if profile not in self.epochs:
            raise ParamsError(f"params.yaml: eval.epochs has no entry for train.profile {profile!r} "
                              f"(it has {', '.join(self.epochs)}): add one, e.g. eval.epochs.{profile}: all")
        return self.epochs[profile]


def _parse_floor_ok(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and 0 <= v <= 1


@dataclass(frozen=True)
class MinEvents:
    """score.intervals.min_events: the events below which a metric gets no interval, verdict or
    paired test (pronounce.scoring.intervals.too_few)."""
    utterances: int = _check(
        lambda v: v >= 2, ">= 2",
        "Scored answers behind a PCC, SCC or RMSE; utterances behind WER, PER and the paper-style MDD metrics.")
    mispronounced: int = _check(
        lambda v: v >= 1, ">= 1",
        "Mispronounced phones (TR + FA) behind the standard recall, precision and F1.")
    rejections: int = _check(
        lambda v: v >= 1, ">= 1",
        "Phones the model rejects (TR + FR) behind the standard precision and F1.")


@dataclass(frozen=True)
class IntervalParams:
    """score.intervals: the bootstrap of pronounce.scoring.bootstrap."""
    seed: int = _non_negative("The bootstrap's seed.")
    n_resamples: int = _positive("Bootstrap resamples.")
    level: str = _one_of(
        "speaker", "utterance",
        help="`speaker`: resample the test set's speakers with all their utterances; `utterance`: utterances "
             "independently (for comparison).")
    min_speakers: int = _check(
        lambda v: v >= 2, ">= 2",
        "A test set with fewer speakers gets the utterance-level interval, labelled as such.")
    confidence: float = _check(lambda v: 0 < v < 1, "between 0 and 1, exclusive", "The intervals' confidence level.")
    min_events: MinEvents = _about(
        "The events a metric must rest on to get an interval, a verdict and a paired test; below it they read `too few"
        " (n = k)`.")


@dataclass(frozen=True)
class ScoreParams:
    # one floor for every training profile, or {profile: floor} (min_parse_rate_for)
    min_parse_rate: float | Mapping = _check(
        lambda v: _parse_floor_ok(v) or (isinstance(v, dict) and bool(v) and all(map(_parse_floor_ok, v.values()))),
        "a number between 0 and 1, or a mapping from training profile to one",
        "The score stage fails when the final adapter's answers of either task parse less often than this, per "
        "training profile (one number, or a mapping from profile to number).",
        types=(int, float, dict))
    intervals: IntervalParams = _about("The 95% intervals of every metric (a speaker-clustered bootstrap).")

    def min_parse_rate_for(self, profile: str) -> float:
        """The parse-rate floor under a training profile (the paper profile's is a real run's)."""
        if not isinstance(self.min_parse_rate, Mapping):
            return self.min_parse_rate
        if profile not in self.min_parse_rate:
            raise ParamsError(f"params.yaml: score.min_parse_rate has no entry for train.profile {profile!r} "
                              f"(it has {', '.join(self.min_parse_rate)}): add one")
        return self.min_parse_rate[profile]


# --------------------------------------------------------------------------- what each stage reads


@dataclass(frozen=True)
class TrainJob:
    """Stage train@<name>: dvc.yaml tracks seed, configs.<name>, its lora_params section and train's
    profile, num_processes, determinism and active recipe."""
    name: str
    config: ConfigParams
    lora: LoraParams | None  # a fresh adapter's settings; None: the speech LoRA brings its own
    recipe: Recipe
    seed: int
    num_processes: int
    determinism: str
    profile: str  # train.profile: the recipe's name, recorded beside the adapter (training.json)


@dataclass(frozen=True)
class EvalJob:
    """Stage evaluate@<name> (or evaluate_base, name `base`)."""
    name: str
    seed: int
    model_base: str  # recorded in summary.json
    batch_size: int
    max_new_tokens: int
    cpu_threads: int
    determinism: str
    epochs: str | tuple | None  # eval.epochs for train.profile; None for the base model


@dataclass(frozen=True)
class ScoreJob:
    """Stage score@<name>."""
    name: str
    config: ConfigParams
    model_base: str  # recorded in details.json, with the corpus
    corpus: str
    min_parse_rate: float  # score.min_parse_rate for train.profile
    intervals: IntervalParams


@dataclass(frozen=True)
class ReportJob:
    """Stage report."""
    configs: tuple[str, ...]
    model: ModelParams
    corpus: str
    profile: str


@dataclass(frozen=True)
class Params:
    seed: int = _non_negative(
        "The seed of everything random: the tiny model's weights, LoRA initialisation, data order, dropout.")
    data: DataParams = _about("Stage decode: which corpus, and what it may reject.")
    model: ModelParams = _about("Stage base: which base model, at which revision, with which attention kernels.")
    lora: LoraParams = _about("The fresh LoRA adapter of configs whose init is `fresh`.")
    configs: Mapping[str, ConfigParams] = _about(
        "One trained model per config, each a train, evaluate and score stage (dvc.yaml foreach).")
    train: TrainParams = _about("Stage train: which recipe trains, on how many processes, how deterministically.")
    eval: EvalParams = _about("Stages evaluate and evaluate_base: greedy generation on the test split, both tasks.")
    score: ScoreParams = _about("Stage score: the parse-rate floor and the intervals of every metric.")

    def config(self, name: str) -> ConfigParams:
        """One config's settings, or a ParamsError naming the configs that exist."""
        if name not in self.configs:
            raise ParamsError(f"params.yaml: no config {name!r} under configs (have: {', '.join(self.configs)})")
        return self.configs[name]

    def train_job(self, name: str) -> TrainJob:
        cfg = self.config(name)
        return TrainJob(name, cfg, self.lora if cfg.init == "fresh" else None, self.train.recipe, self.seed,
                        self.train.num_processes, self.train.determinism, self.train.profile)

    def eval_job(self, name: str) -> EvalJob:
        """A config's evaluation, or with name `base` the untrained base model's (no epochs)."""
        e = self.eval
        if name == RESERVED_CONFIG:
            epochs = None
        else:
            self.config(name)
            epochs = e.epochs_for(self.train.profile)
        return EvalJob(name, self.seed, self.model.base, e.batch_size, e.max_new_tokens, e.cpu_threads, e.determinism,
                       epochs)

    def score_job(self, name: str) -> ScoreJob:
        return ScoreJob(name, self.config(name), self.model.base, self.data.corpus,
                        self.score.min_parse_rate_for(self.train.profile), self.score.intervals)

    def report_job(self) -> ReportJob:
        return ReportJob(tuple(self.configs), self.model, self.data.corpus, self.train.profile)


# --------------------------------------------------------------------------- building and checking


def _type_name(types) -> str:
    return " or ".join("null" if t is NoneType else t.__name__ for t in types)


def _types(annotation) -> tuple:
    args = get_args(annotation) if isinstance(annotation, UnionType) else (annotation,)
    return tuple(t for a in args for t in ((int, float) if a is float else (a,)))


def _frozen(value):
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


def _mapping(value, path: str) -> dict:
    if not isinstance(value, dict):
        raise ParamsError(f"params.yaml: {path or 'the file'} must be a mapping")
    return value


def _build(cls, value, path: str = ""):
    """A section's dataclass from its YAML mapping; errors name the key."""
    prefix = f"{path}." if path else ""
    value = _mapping(value, path)
    specs, hints = fields(cls), get_type_hints(cls)
    known = sorted(f.name for f in specs)
    for key in value:
        if key not in known:
            raise ParamsError(f"params.yaml: unknown key {prefix}{key} (known: {', '.join(known)})")
    kwargs = {}
    for f in specs:
        if f.name not in value:
            raise ParamsError(f"params.yaml: missing key {prefix}{f.name}")
        kwargs[f.name] = _field(hints[f.name], f.metadata, value[f.name], f"{prefix}{f.name}")
    return cls(**kwargs)


def _field(annotation, metadata, value, path: str):
    if is_dataclass(annotation):
        return _build(annotation, value, path)
    if get_origin(annotation) is Mapping:  # names the user chooses, each value of one section type
        item = get_args(annotation)[1]
        return MappingProxyType({name: _field(item, {}, v, f"{path}.{name}")
                                 for name, v in _mapping(value, path).items()})
    types = metadata.get("types") or _types(annotation)
    # bool is an int in Python; a YAML `true` where a number belongs is a mistake.
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        raise ParamsError(f"params.yaml: {path} must be {_type_name(types)}, got {value!r}")
    test, meaning = metadata.get("check") or (None, None)
    if test is not None and value is not None and not test(value):
        raise ParamsError(f"params.yaml: {path} must be {meaning}, got {value!r}")
    return _frozen(value)


def parse_params(raw) -> Params:
    """Params from params.yaml's parsed content, validated (each section, then across sections)."""
    params = _build(Params, raw)
    train = params.train
    if train.profile not in train.recipes:
        raise ParamsError(f"params.yaml: train.profile {train.profile!r} names no recipe "
                          f"(train.recipes has {', '.join(train.recipes)})")
    params.eval.epochs_for(train.profile)  # a per-profile eval.epochs must cover the profile in use
    params.score.min_parse_rate_for(train.profile)  # and so must a per-profile parse-rate floor
    # N processes each accumulate grad_accum / N batches, so the recipe's effective batch
    # (batch_size x grad_accum, as one process would train it) holds whatever N is.
    if train.recipe.grad_accum % train.num_processes:
        raise ParamsError(f"params.yaml: train.num_processes {train.num_processes} does not divide "
                          f"train.recipes.{train.profile}.grad_accum {train.recipe.grad_accum}, so the "
                          f"recipe's effective batch cannot be kept: use a divisor of it")
    for name, recipe in train.recipes.items():
        # The trainer averages the loss logged at a step over the steps since the last log; a run
        # resumed between two logs would average fewer steps and log another number.
        if recipe.save_steps % recipe.logging_steps:
            raise ParamsError(f"params.yaml: train.recipes.{name}.save_steps {recipe.save_steps} is not a multiple "
                              f"of its logging_steps {recipe.logging_steps}, so a resumed run would log other "
                              f"losses: use a multiple")
    if RESERVED_CONFIG in params.configs:
        raise ParamsError(f"params.yaml: a config may not be named {RESERVED_CONFIG!r} (predictions/"
                          f"{RESERVED_CONFIG}/ holds the untrained base model's)")
    for name, cfg in params.configs.items():  # dvc.yaml tracks the section lora_params names
        want = "lora" if cfg.init == "fresh" else "model"
        if cfg.lora_params != want:
            raise ParamsError(f"params.yaml: configs.{name}.lora_params must be {want} for init {cfg.init} "
                              f"(the section its adapter is built from), got {cfg.lora_params!r}")
    return params


def load_params(path="params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run stages from the repository root") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML: {e}") from None
    return parse_params(raw)
