"""Numbers whose bytes do not depend on the CPU or the thread count, for building ``builtin:tiny``:
seeded random draws (``with portable_init(): ...``), statistics rounded past the reach of the
kernels' summation order (``rounded_statistic``), and the log-mel features in float64
(``log_mel_float64``).

Why: torch has one vectorised kernel per CPU capability (``ATEN_CPU_CAPABILITY``), and its float32
``normal_``/``randn`` and ranged ``uniform_(a, b)`` round differently in each (torch 2.13: other
weights under ``default`` than under ``avx2`` from one seed). Only the float64 ``uniform_()`` on
[0, 1) and ``normal_()`` with mean 0, std 1 agree everywhere. Inside ``portable_init()`` every
``uniform_``, ``normal_`` and ``randn`` on a CPU floating tensor draws those, scales and shifts
them in two separate float64 operations and rounds once to the tensor's dtype; any other random
draw on a floating tensor fails loudly.
Why, in full: docs/reproducibility.md#how-the-tiny-models-draws-are-made-cpu-independent
"""

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
# Random draws this mode does not make portable: an error names them if used inside it.
_UNHANDLED = ("normal", "log_normal_", "cauchy_", "exponential_", "geometric_", "rand_like", "randn_like")


def _arg(args, kwargs, index: int, name: str, default):
    """An aten op's argument, passed by position or by name."""
    return args[index] if len(args) > index else kwargs.get(name, default)


def _portable(tensor) -> bool:
    return tensor.device.type == "cpu" and tensor.is_floating_point()


def _fill(target, draw, scale: float, shift: float, generator):
    """`target` <- draw() * scale + shift, drawn and scaled in float64, rounded once."""
    values = draw(torch.empty(target.shape, dtype=torch.float64), generator=generator)
    target.copy_(values.mul_(scale).add_(shift))
    return target


class portable_init(TorchDispatchMode):
    """A context in which torch's random initialisation gives the same bytes on any CPU."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _aten.uniform_.default and _portable(args[0]):
            low, high = _arg(args, kwargs, 1, "from", 0.0), _arg(args, kwargs, 2, "to", 1.0)
            return _fill(args[0], torch.Tensor.uniform_, high - low, low, kwargs.get("generator"))
        if func is _aten.normal_.default and _portable(args[0]):
            mean, std = _arg(args, kwargs, 1, "mean", 0.0), _arg(args, kwargs, 2, "std", 1.0)
            return _fill(args[0], torch.Tensor.normal_, std, mean, kwargs.get("generator"))
        if func in (_aten.randn.default, _aten.randn.generator):
            dtype = kwargs.get("dtype") or torch.get_default_dtype()
            if kwargs.get("device") in (None, "cpu", torch.device("cpu")) and dtype.is_floating_point:
                out = torch.empty(args[0], dtype=dtype)
                return _fill(out, torch.Tensor.normal_, 1.0, 0.0, kwargs.get("generator"))
        if func.overloadpacket.__name__ in _UNHANDLED:
            raise NotImplementedError(f"portable_init: {func} is not made CPU-independent; draw with "
                                      "uniform_, normal_ or randn, or extend pronounce.portable_init")
        return func(*args, **kwargs)


# Significant digits kept of each statistic (relative to its tensor's largest magnitude). The
# calibration's float64 statistics differ across thread counts and CPU capabilities by at most
# 2.3e-16 of that magnitude (measured: OMP_NUM_THREADS 1 and 2, ATEN_CPU_CAPABILITY default and
# avx2), so a rounding step of 1e-6 gives the same float32 bytes everywhere unless a value lies
# within ~1e-15 of a rounding boundary (odds ~1e-7 for the tiny model's 289 values).
STATISTIC_DIGITS = 6


def log_mel_float64(extractor, wave):
    """``Phi4MultimodalFeatureExtractor``'s log-mel features of one clip, computed in float64
    (the extractor's own arithmetic is float32: its last bits depend on the CPU's kernels).
    The same formula as transformers 5.24's ``_torch_extract_fbank_features`` for an unpadded
    clip; tests/model/test_base.py checks they agree."""
    import torch

    samples = torch.from_numpy(wave).double()
    frames = samples.unfold(-1, extractor.win_length, extractor.hop_length)
    previous = torch.roll(frames, 1, dims=-1)
    previous[:, 0] = previous[:, 1]
    frames = (frames - extractor.preemphasis * previous) * 32768
    window = torch.hamming_window(extractor.win_length, periodic=False, dtype=torch.float64)
    power = torch.fft.rfft(window * frames, n=extractor.n_fft, dim=-1).abs() ** 2
    mel = torch.from_numpy(extractor.mel_filters).double()
    return torch.log(torch.clamp(power @ mel, min=1.0))


def rounded_statistic(stat):
    """A float64 statistic rounded to ``STATISTIC_DIGITS`` significant digits of its largest
    magnitude, as float32: the same value whatever order the machine summed it in."""
    import math

    import torch

    peak = stat.abs().max().item()
    if peak == 0 or not math.isfinite(peak):
        raise ValueError(f"cannot round a statistic whose largest magnitude is {peak}")
    step = 10.0 ** (math.floor(math.log10(peak)) - STATISTIC_DIGITS + 1)
    return (torch.round(stat / step) * step).float()
