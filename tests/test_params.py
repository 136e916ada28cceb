import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from pronounce.errors import ParamsError
from pronounce.params import config_params, load_params


def write(tmp_path, edit):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_the_committed_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert set(params["configs"]) >= {"paper_r64", "pretrained_r320"}


@pytest.mark.parametrize("edit,message", [
    (lambda p: p["lora"].update(rank=4), r"unknown key lora\.rank"),
    (lambda p: p.update(extra=1), r"unknown key extra"),
    (lambda p: p["lora"].update(r="sixty"), r"lora\.r must be int, got 'sixty'"),
    (lambda p: p["lora"].update(r=True), r"lora\.r must be int, got True"),
    (lambda p: p["train"]["recipes"]["paper"].update(learning_rate=-1e-5), r"train\.recipes\.paper\.learning_rate must be > 0"),
    (lambda p: p["data"].update(max_reject_fraction=1.5), r"data\.max_reject_fraction must be between 0 and 1"),
    (lambda p: p["data"].pop("corpus"), r"missing key data\.corpus"),
    (lambda p: p["train"].update(profile="fast"), r"train\.profile 'fast' names no recipe"),
    (lambda p: p["configs"]["paper_r64"].update(init="warm"), r"configs\.paper_r64\.init must be fresh or speech-lora"),
])
def test_bad_params_name_their_key(tmp_path, edit, message):
    with pytest.raises(ParamsError, match=message):
        load_params(write(tmp_path, edit))


def test_a_config_that_does_not_exist():
    with pytest.raises(ParamsError, match=r"no config 'paper_r128'.*paper_r64"):
        config_params(load_params(ROOT / "params.yaml"), "paper_r128")


def test_invalid_yaml_is_a_clear_error(tmp_path):
    (tmp_path / "params.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_stage_reports_a_bad_param_in_one_line(tmp_path):
    write(tmp_path, lambda p: p["lora"].update(r="sixty"))
    run = subprocess.run([sys.executable, str(ROOT / "stages/train.py"), "paper_r64"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "error: params.yaml: lora.r must be int, got 'sixty'" in run.stderr


@pytest.mark.parametrize("base,message", [
    ("{tmp}/empty", r"model\.base: base model folder .* is missing config\.json"),
    ("{tmp}/absent", r"model\.base: base model folder .* does not exist"),
    ("builtin:huge", r"model\.base 'builtin:huge' is unknown"),
])
def test_base_model_without_model_files_names_the_key(tmp_path, base, message):
    from pronounce.base import run_base

    (tmp_path / "empty").mkdir()
    with pytest.raises(ParamsError, match=message):
        run_base(base.format(tmp=tmp_path), None, 0, tmp_path / "out")
