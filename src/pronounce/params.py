"""params.yaml: loaded with yaml.safe_load and validated against one schema when a stage starts.

A mistake names its key: unknown keys, wrong types and out-of-range values are errors, not
silent defaults. The schema is the one place that lists every tunable value.
"""

from pathlib import Path

import yaml

from .errors import ParamsError

# A spec is (type or tuple of types, check or None, what the check means).
POSITIVE = (lambda v: v > 0, "> 0")
NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
FRACTION = (lambda v: 0 <= v <= 1, "between 0 and 1")
NUMBER = (int, float)
# model.base's built-in value: the tiny model the base stage builds (here, not in model.py, so the
# report can name it without importing the model code).
BUILTIN_TINY = "builtin:tiny"
# model.attn_implementation: the attention kernels the loader may be asked for.
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
# pronounce.determinism.MODES, not imported: every stage reads params, few need determinism.py
DETERMINISM = (lambda v: v in ("seeded", "full"), "seeded or full")


def _epochs_ok(v) -> bool:
    """An eval.epochs selection: all, none, last:<n> or a list of epoch numbers."""
    if isinstance(v, str):
        return v in ("all", "none") or (v.startswith("last:") and v[5:].isdigit() and int(v[5:]) >= 1)
    return isinstance(v, list) and all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in v)


def _spec(types, check=None):
    return (types, *(check or (None, None)))


SCHEMA = {
    "seed": _spec(int, NON_NEGATIVE),
    "data": {
        "corpus": _spec(str),
        "max_seconds": _spec(NUMBER, POSITIVE),
        "max_reject_fraction": _spec(NUMBER, FRACTION),
    },
    "model": {
        "base": _spec(str),
        "revision": _spec((str, type(None))),
        "attn_implementation": _spec(str, (lambda v: v in ATTN_IMPLEMENTATIONS, " or ".join(ATTN_IMPLEMENTATIONS))),
    },
    "lora": {
        "r": _spec(int, POSITIVE),
        "alpha": _spec(NUMBER, POSITIVE),
        "dropout": _spec(NUMBER, FRACTION),
        "target_modules": _spec(str),
    },
    "speech_lora": {"folder": _spec(str)},
    "configs": {
        "*": {
            "init": _spec(str, (lambda v: v in ("fresh", "speech-lora"), "fresh or speech-lora")),
            "lora_params": _spec(str, (lambda v: v in ("lora", "speech_lora"), "lora or speech_lora")),
            "unfreeze_audio": _spec(bool),
        },
    },
    "train": {
        "profile": _spec(str),
        "num_processes": _spec(int, POSITIVE),
        "determinism": _spec(str, DETERMINISM),
        "recipes": {
            "*": {
                "epochs": _spec(int, POSITIVE),
                "batch_size": _spec(int, POSITIVE),
                "grad_accum": _spec(int, POSITIVE),
                "learning_rate": _spec(NUMBER, POSITIVE),
                "lr_scheduler": _spec(str),
                "warmup_ratio": _spec(NUMBER, FRACTION),
                "optim": _spec(str),
                "max_length": _spec(int, POSITIVE),
                "logging_steps": _spec(int, POSITIVE),
                "precision": _spec(str, (lambda v: v in ("auto", "bf16", "fp32"), "auto, bf16 or fp32")),
                "gradient_checkpointing": _spec(bool),
                "train_lm_head": _spec(bool),
                "cpu_threads": _spec(int, NON_NEGATIVE),
            },
        },
    },
    "eval": {
        "batch_size": _spec(int, POSITIVE),
        "max_new_tokens": _spec(int, POSITIVE),
        # one selection for every training profile, or {profile: selection} (eval_epochs_spec)
        "epochs": _spec((str, list, dict), (
            lambda v: _epochs_ok(v) or (isinstance(v, dict) and bool(v) and all(map(_epochs_ok, v.values()))),
            "all, none, last:<n> (n >= 1), a list of epoch numbers >= 1, or a mapping from training "
            "profile to one of these",
        )),
        "cpu_threads": _spec(int, NON_NEGATIVE),
        "determinism": _spec(str, DETERMINISM),
    },
    "score": {
        "min_parse_rate": _spec(NUMBER, FRACTION),
    },
}


def _type_name(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def validate(params: dict, schema: dict = SCHEMA, prefix: str = "") -> dict:
    if not isinstance(params, dict):
        raise ParamsError(f"params.yaml: {prefix.rstrip('.') or 'the file'} must be a mapping")
    for key in params:
        if key not in schema and "*" not in schema:
            raise ParamsError(f"params.yaml: unknown key {prefix}{key} (known: {', '.join(sorted(schema))})")
    for key, spec in schema.items():
        if key == "*":  # a mapping of user-chosen names, each validated by the same spec
            for name, value in params.items():
                _check(value, spec, f"{prefix}{name}")
            continue
        if key not in params:
            raise ParamsError(f"params.yaml: missing key {prefix}{key}")
        _check(params[key], spec, f"{prefix}{key}")
    return params


def _check(value, spec, path: str) -> None:
    if isinstance(spec, dict):
        validate(value, spec, f"{path}.")
        return
    types, check, meaning = spec
    # bool is an int in Python; a YAML `true` where a number belongs is a mistake.
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ParamsError(f"params.yaml: {path} must be {_type_name(types)}, got {value!r}")
    if not isinstance(value, types):
        raise ParamsError(f"params.yaml: {path} must be {_type_name(types)}, got {value!r}")
    if check is not None and value is not None and not check(value):
        raise ParamsError(f"params.yaml: {path} must be {meaning}, got {value!r}")


def load_params(path="params.yaml") -> dict:
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run stages from the repository root") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML: {e}") from None
    validate(params)
    if params["train"]["profile"] not in params["train"]["recipes"]:
        raise ParamsError(f"params.yaml: train.profile {params['train']['profile']!r} names no recipe "
                          f"(train.recipes has {', '.join(params['train']['recipes'])})")
    eval_epochs_spec(params)  # a per-profile eval.epochs must cover the profile in use
    # N processes each accumulate grad_accum / N batches, so the recipe's effective batch
    # (batch_size x grad_accum, as one process would train it) holds whatever N is.
    n, profile = params["train"]["num_processes"], params["train"]["profile"]
    if recipe(params)["grad_accum"] % n:
        raise ParamsError(f"params.yaml: train.num_processes {n} does not divide "
                          f"train.recipes.{profile}.grad_accum {recipe(params)['grad_accum']}, so the "
                          f"recipe's effective batch cannot be kept: use a divisor of it")
    return params


def config_params(params: dict, name: str) -> dict:
    """One config's settings, or a ParamsError naming the configs that exist."""
    if name not in params["configs"]:
        raise ParamsError(f"params.yaml: no config {name!r} under configs (have: {', '.join(params['configs'])})")
    return params["configs"][name]


def recipe(params: dict) -> dict:
    return params["train"]["recipes"][params["train"]["profile"]]


def eval_epochs_spec(params: dict):
    """The epochs to evaluate under the training profile in use: eval.epochs itself, or its
    entry for the profile when it is a mapping (the paper profile reports every epoch, as the
    paper's Table 3 does; the smoke profile its last two)."""
    spec = params["eval"]["epochs"]
    if not isinstance(spec, dict):
        return spec
    profile = params["train"]["profile"]
    if profile not in spec:
        raise ParamsError(f"params.yaml: eval.epochs has no entry for train.profile {profile!r} "
                          f"(it has {', '.join(spec)}): add one, e.g. eval.epochs.{profile}: all")
    return spec[profile]
