"""set_determinism: what each mode does to the environment and to torch, on a CPU and (with
torch.cuda.is_available patched) on CUDA, without a GPU."""

import os

import pytest
import torch

from pronounce.core.determinism import set_determinism

CUDA_VARS = ("CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG")


@pytest.fixture
def clean(monkeypatch):
    """No CUDA variables set beforehand; torch's global flags restored afterwards."""
    for var in CUDA_VARS:
        monkeypatch.delenv(var, raising=False)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    yield monkeypatch
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
     torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) = saved[2:]
    for var in CUDA_VARS:  # monkeypatch only restores what it set itself
        os.environ.pop(var, None)


def deterministic_kernels():
    return (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)


@pytest.mark.parametrize("mode", ["seeded", "full"])
def test_on_cuda_cublas_is_deterministic_and_only_full_blocks_launches(clean, mode):
    clean.setattr(torch.cuda, "is_available", lambda: True)
    set_determinism(7, mode)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert os.environ.get("CUDA_LAUNCH_BLOCKING") == ("1" if mode == "full" else None)
    assert deterministic_kernels() == (True, True, False, False, False)
    # seeded warns on an op without a deterministic CUDA kernel; full fails on it
    assert torch.is_deterministic_algorithms_warn_only_enabled() is (mode == "seeded")


@pytest.mark.parametrize("mode", ["seeded", "full"])
def test_on_a_cpu_both_modes_are_the_same_seeded_deterministic_run(clean, mode):
    clean.setattr(torch.cuda, "is_available", lambda: False)
    set_determinism(7, mode)
    assert not any(var in os.environ for var in CUDA_VARS)  # nothing CUDA-only is set
    assert deterministic_kernels() == (True, True, False, False, False)
    first = torch.rand(3)
    set_determinism(7, mode)
    assert torch.equal(torch.rand(3), first)  # seeded: the same draws again
    torch.manual_seed(7)
    assert torch.equal(torch.rand(3), first)  # ... from this seed


def test_an_unknown_mode_is_refused(clean):
    with pytest.raises(ValueError, match=r"determinism must be one of seeded, full, got 'exact'"):
        set_determinism(7, "exact")


def test_params_validate_the_mode(tmp_path):
    import yaml
    from conftest import ROOT

    from pronounce.core.errors import ParamsError
    from pronounce.core.params import load_params

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert (params["train"]["determinism"], params["eval"]["determinism"]) == ("seeded", "seeded")
    params["eval"]["determinism"] = "exact"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"eval\.determinism must be seeded or full, got 'exact'"):
        load_params(tmp_path / "params.yaml")
