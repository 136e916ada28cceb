"""pronounce.model.portable: random draws, statistics and features whose bytes do not depend on the CPU.
(The whole tiny build under other thread counts and CPU capabilities: tests/model/test_base.py.)"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pronounce.model.portable import STATISTIC_DIGITS, log_mel_float64, portable_init, rounded_statistic

DRAWS = """
import hashlib, torch
from pronounce.model.portable import portable_init
torch.manual_seed(0)
with portable_init():
    linear = torch.nn.Linear(33, 17)  # kaiming uniform_ on weight and bias
    drawn = [linear.weight, linear.bias, torch.empty(100).normal_(0.1, 0.02), torch.randn(40, 3),
             torch.empty(50, dtype=torch.float64).uniform_(-2, 3)]
print(torch.backends.cpu.get_cpu_capability().lower(), hashlib.md5(b"".join(t.detach().numpy().tobytes() for t in drawn)).hexdigest())
"""


def draws_under(capability: str) -> list[str]:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    run = subprocess.run([sys.executable, "-c", DRAWS], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.split()


def test_draws_are_the_same_bytes_under_every_cpu_capability():
    best = torch.backends.cpu.get_cpu_capability().lower()
    (cap_a, draws_a), (cap_b, draws_b) = draws_under("default"), draws_under(best)
    assert (cap_a, cap_b) == ("default", best)  # the switch took effect
    assert draws_a == draws_b


def test_draws_keep_their_distribution_dtype_and_generator():
    torch.manual_seed(0)
    with portable_init():
        uniform = torch.empty(20000).uniform_(-0.5, 1.5)
        normal = torch.empty(20000).normal_(3.0, 0.25)
        randn = torch.randn(20000)
        a = torch.randn(50, generator=torch.Generator().manual_seed(7))
        b = torch.randn(50, generator=torch.Generator().manual_seed(7))
        c = torch.randn(50, generator=torch.Generator().manual_seed(8))
    assert uniform.dtype == normal.dtype == randn.dtype == torch.float32
    assert -0.5 <= uniform.min() and uniform.max() < 1.5 and abs(uniform.mean() - 0.5) < 0.02
    assert abs(normal.mean() - 3.0) < 0.01 and abs(normal.std() - 0.25) < 0.01
    assert abs(randn.mean()) < 0.03 and abs(randn.std() - 1) < 0.03
    assert torch.equal(a, b) and not torch.equal(a, c)  # an explicit generator is used, not the global one


def test_a_draw_not_made_portable_is_an_error_not_a_silent_kernel_dependence():
    with portable_init(), pytest.raises(NotImplementedError, match="exponential_"):
        torch.empty(10).exponential_()


def test_rounded_statistic_absorbs_summation_order_and_keeps_its_digits():
    stat = torch.tensor([12.3456789012345, -0.000123456789, 3.0], dtype=torch.float64)
    jitter = stat * (1 + 1e-13)  # far more than the 2.3e-16 measured across threads and CPUs
    assert torch.equal(rounded_statistic(stat), rounded_statistic(jitter))
    rounded = rounded_statistic(stat)
    assert rounded.dtype == torch.float32
    step = 10.0 ** (1 - STATISTIC_DIGITS + 1)  # the largest magnitude is 12.3...: 6 digits = steps of 1e-4
    assert rounded.tolist() == pytest.approx([12.3457, -0.0001, 3.0], abs=1e-6)
    assert torch.allclose(rounded.double(), stat, atol=step / 2 + 1e-6)
    with pytest.raises(ValueError, match="largest magnitude"):
        rounded_statistic(torch.zeros(3, dtype=torch.float64))


def test_log_mel_float64_is_the_feature_extractors_formula():
    """It mirrors transformers' float32 extractor; an upgrade that changes the formula fails here."""
    from transformers import Phi4MultimodalFeatureExtractor

    extractor = Phi4MultimodalFeatureExtractor()
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    for wave in (0.1 * rng.standard_normal(16000), 0.3 * np.sin(2 * np.pi * 440 * t), np.zeros(16000)):
        wave = wave.astype(np.float32)
        theirs = extractor([wave], sampling_rate=16000, return_tensors="pt")["audio_input_features"][0]
        ours = log_mel_float64(extractor, wave)
        assert ours.dtype == torch.float64 and ours.shape == theirs.shape
        # log-mel values are 0-25: float32's arithmetic leaves ~1e-6 of them, a formula change far more
        assert torch.allclose(ours.float(), theirs, atol=1e-4, rtol=0), (ours.float() - theirs).abs().max()
