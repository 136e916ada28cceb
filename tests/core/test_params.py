import dataclasses
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from pronounce.core.errors import ParamsError
from pronounce.core.params import ConfigParams, Params, Recipe, TrainJob, load_params, parse_params
from pronounce.training.train import fingerprint, params_parts


def write(tmp_path, edit):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_the_committed_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params) and set(params.configs) >= {"paper_r64", "pretrained_r320"}
    assert params.train.recipe is params.train.recipes["smoke"] and isinstance(params.train.recipe, Recipe)


def test_params_are_frozen_and_typed():
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.lora.r = 8
    with pytest.raises(TypeError, match="does not support item assignment"):
        params.configs["new"] = params.configs["paper_r64"]
    assert params.configs["pretrained_r320"] == ConfigParams(init="speech-lora", lora_params="model",
                                                             unfreeze_audio=False)
    assert isinstance(params.eval.epochs["paper"], str)


# The training fingerprint (train.fingerprint: which checkpoint under runs/ a run may resume)
# over the committed params, as computed before params were typed (the YAML's dicts:
# fingerprint(cfg, params[cfg["lora_params"]], recipe, seed, num_processes)): typing them
# must not change what a run hashes. pretrained_r320's changed once on purpose: it hashed the
# removed speech_lora section ({"folder": "speech-lora"}), now None (nothing in params). The
# recipe's save_steps, added later, is left out (no weight depends on it), so the hash of the
# committed params is what it was before it existed.
@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_the_training_fingerprint_hashes_what_it_hashed_before(profile):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["profile"] = profile
    job = parse_params(raw).train_job("paper_r64")
    cfg = raw["configs"]["paper_r64"]  # the old way, from the YAML's own dicts
    recipe = {k: v for k, v in raw["train"]["recipes"][profile].items() if k != "save_steps"}
    old = fingerprint(cfg, raw[cfg["lora_params"]], recipe, raw["seed"], 1)
    assert fingerprint(*params_parts(job)) == old
    raw["train"]["recipes"][profile]["save_steps"] *= 2  # a checkpoint cadence changes no weight
    assert fingerprint(*params_parts(parse_params(raw).train_job("paper_r64"))) == old
    raw["train"]["recipes"][profile]["epochs"] += 1  # and it moves with what the run depends on
    assert fingerprint(*params_parts(parse_params(raw).train_job("paper_r64"))) != old


def test_a_speech_lora_config_takes_no_adapter_params():
    job = load_params(ROOT / "params.yaml").train_job("pretrained_r320")
    assert isinstance(job, TrainJob) and job.lora is None and params_parts(job)[1] is None
    assert load_params(ROOT / "params.yaml").train_job("paper_r64").lora.r == 64


@pytest.mark.parametrize("edit,message", [
    (lambda p: p["lora"].update(rank=4), r"unknown key lora\.rank"),
    (lambda p: p.update(extra=1), r"unknown key extra"),
    (lambda p: p["lora"].update(r="sixty"), r"lora\.r must be int, got 'sixty'"),
    (lambda p: p["lora"].update(r=True), r"lora\.r must be int, got True"),
    (lambda p: p["train"]["recipes"]["paper"].update(learning_rate=-1e-5), r"train\.recipes\.paper\.learning_rate must be > 0"),
    (lambda p: p["train"]["recipes"]["smoke"].update(audio_learning_rate=0),
     r"train\.recipes\.smoke\.audio_learning_rate must be > 0 or null, got 0"),
    (lambda p: p["train"]["recipes"]["paper"].update(audio_learning_rate="1e-5"),  # YAML 1.1 reads 1e-5 as a string
     r"train\.recipes\.paper\.audio_learning_rate must be int or float or null, got '1e-5'"),
    (lambda p: p["data"].update(max_reject_fraction=1.5), r"data\.max_reject_fraction must be between 0 and 1"),
    (lambda p: p["data"].pop("corpus"), r"missing key data\.corpus"),
    (lambda p: p["train"].update(profile="fast"), r"train\.profile 'fast' names no recipe"),
    (lambda p: p["configs"]["paper_r64"].update(init="warm"), r"configs\.paper_r64\.init must be fresh or speech-lora"),
    (lambda p: p["configs"]["paper_r64"].update(lora_params="model"),
     r"configs\.paper_r64\.lora_params must be lora for init fresh .*, got 'model'"),
    (lambda p: p["configs"].update(base=p["configs"]["paper_r64"]), r"a config may not be named 'base'"),
    (lambda p: p.update(speech_lora={"folder": "speech-lora"}), r"unknown key speech_lora \(known: configs, data"),
    (lambda p: p["model"].update(revision=3), r"model\.revision must be str or null, got 3"),
    (lambda p: p["model"].update(attn_implementation="flash"),
     r"model\.attn_implementation must be eager or sdpa or flash_attention_2, got 'flash'"),
    (lambda p: p["lora"].update(alpha=True), r"lora\.alpha must be int or float, got True"),
    (lambda p: p["train"]["recipes"]["smoke"].pop("optim"), r"missing key train\.recipes\.smoke\.optim"),
    (lambda p: p["train"]["recipes"].update(fast=3), r"train\.recipes\.fast must be a mapping"),
    (lambda p: p["train"].update(recipes=[1]), r"train\.recipes must be a mapping"),
    (lambda p: p["train"].update(determinism="strict"), r"train\.determinism must be seeded or full, got 'strict'"),
    (lambda p: p["train"].update(num_processes=3), r"train\.num_processes 3 does not divide train\.recipes\.smoke"),
    (lambda p: p["train"]["recipes"]["paper"].update(save_steps=25),
     r"train\.recipes\.paper\.save_steps 25 is not a multiple of its logging_steps 10, so a resumed run would log other losses"),
    (lambda p: p["train"]["recipes"]["smoke"].update(save_steps=0), r"train\.recipes\.smoke\.save_steps must be > 0, got 0"),
    (lambda p: p["eval"].update(cpu_threads=-1), r"eval\.cpu_threads must be >= 0, got -1"),
    (lambda p: p["score"].update(min_parse_rate=2), r"score\.min_parse_rate must be a number between 0 and 1, or a mapping from training profile to one, got 2"),
    (lambda p: p.update(seed=-1), r"seed must be >= 0, got -1"),
    (lambda p: p["score"]["intervals"]["min_events"].pop("mispronounced"),
     r"missing key score\.intervals\.min_events\.mispronounced"),
    (lambda p: p["score"]["intervals"]["min_events"].update(rejections=0),
     r"score\.intervals\.min_events\.rejections must be >= 1, got 0"),
])
def test_bad_params_name_their_key(tmp_path, edit, message):
    with pytest.raises(ParamsError, match=message):
        load_params(write(tmp_path, edit))


@pytest.mark.parametrize("job", ["train_job", "eval_job", "score_job"])
def test_a_config_that_does_not_exist(job):
    with pytest.raises(ParamsError, match=r"no config 'paper_r128'.*paper_r64"):
        getattr(load_params(ROOT / "params.yaml"), job)("paper_r128")


def test_the_file_must_be_a_mapping(tmp_path):
    (tmp_path / "params.yaml").write_text("- 1\n")
    with pytest.raises(ParamsError, match=r"params\.yaml: the file must be a mapping"):
        load_params(tmp_path / "params.yaml")


def test_invalid_yaml_is_a_clear_error(tmp_path):
    (tmp_path / "params.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_stage_reports_a_bad_param_in_one_line(tmp_path):
    write(tmp_path, lambda p: p["lora"].update(r="sixty"))
    paths = [f"--{p}={tmp_path / p}" for p in ("base", "decoded", "materialized", "out", "live")]
    run = subprocess.run([sys.executable, str(ROOT / "stages/train.py"), "paper_r64", *paths], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "error: params.yaml: lora.r must be int, got 'sixty'" in run.stderr


@pytest.mark.parametrize("base,message", [
    ("{tmp}/empty", r"model\.base: base model folder .* is missing config\.json"),
    ("{tmp}/absent", r"model\.base: base model folder .* does not exist"),
    ("builtin:huge", r"model\.base 'builtin:huge' is unknown"),
])
def test_base_model_without_model_files_names_the_key(tmp_path, base, message):
    from pronounce.model.base import run_base

    (tmp_path / "empty").mkdir()
    with pytest.raises(ParamsError, match=message):
        run_base(base.format(tmp=tmp_path), None, 0, tmp_path / "out")
