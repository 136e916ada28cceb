"""bf16 matrix products in float32 on a CPU without bf16 matrix kernels: the full-size check on AVX2.

torch sends a CPU bf16 matrix product to oneDNN only where the CPU has AVX-512 (BW/VL/DQ) or ARM's
bf16; elsewhere (an AVX2-only CPU, like this project's machines) it falls back to a reference loop:
measured here at 0.33 GFLOP/s against 105 GFLOP/s for float32, so one full-size training step would
take hours. Convolutions fall to `_slow_conv2d_forward` the same way. Attention (sdpa) has a
vectorised bf16 kernel and is left alone.

Within `fp32_matmul()`, every CPU matrix product or convolution with a bf16 operand upcasts its
operands (exact), multiplies in float32 and rounds the result to bf16 once: what a GPU's bf16
GEMM does (float32 accumulation, one rounding), so the recipe stays the bf16 one. Weights stay bf16 in memory; the
float32 copy of an operand lives only for its own product. It covers the backward pass too (the mode
is thread-local state that autograd carries into the backward).
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

_aten = torch.ops.aten
# Every matrix product and convolution a model reaches on a CPU. Under autograd, linear/matmul/conv
# (einsum too) decompose into mm/addmm/bmm/convolution before a dispatch mode sees them; under inference_mode
# they arrive whole (measured: aten.linear), so both are listed.
MATMULS = frozenset({_aten.mm, _aten.addmm, _aten.bmm, _aten.baddbmm, _aten.mv, _aten.addmv, _aten.addbmm,
                     _aten.dot, _aten.linear, _aten.matmul, _aten.convolution, _aten.convolution_backward,
                     _aten._convolution, _aten.conv1d, _aten.conv2d, _aten.einsum, _aten.tensordot})


def has_bf16_matmul_kernels() -> bool:
    """Whether torch multiplies bf16 matrices on this CPU with oneDNN (not the reference loop)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _is_cpu_bf16(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16 and x.device.type == "cpu"


def has_cpu_bf16(args) -> bool:
    return any(_is_cpu_bf16(a) for a in tree_flatten(args)[0])


# In-place products write into their first argument: computed as the out-of-place one, then copied.
IN_PLACE = {_aten.addmm_: _aten.addmm, _aten.baddbmm_: _aten.baddbmm, _aten.addbmm_: _aten.addbmm,
            _aten.addmv_: _aten.addmv}


class _Float32Matmul(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if (packet not in MATMULS and packet not in IN_PLACE) or not has_cpu_bf16((args, kwargs)):
            return func(*args, **kwargs)
        # A result written into a given tensor (`out=`, as trl's chunked log-prob tiles are, or an
        # in-place product) is computed out of place, then copied in: never into an upcast copy.
        target = args[0] if packet in IN_PLACE else kwargs.get("out")
        if packet in IN_PLACE:
            func = IN_PLACE[packet].default
        elif target is not None:
            func, kwargs = packet.default, {k: v for k, v in kwargs.items() if k != "out"}
        up = lambda a: a.float() if _is_cpu_bf16(a) else a  # noqa: E731 (exact: bf16 is a float32 prefix)
        out = func(*tree_map(up, args), **tree_map(up, kwargs))  # tree_map: einsum takes a list
        if target is not None:
            return target.copy_(out)  # rounds once, to the target's dtype
        # torch refuses mixed float dtypes here, so every float32 result (a product, or a
        # convolution's gradients) is one whose operands were bf16.
        return tree_map(lambda t: t.to(torch.bfloat16) if isinstance(t, torch.Tensor) and t.dtype == torch.float32
                        else t, out)


def fp32_matmul():
    """Context: CPU bf16 matrix products computed in float32, rounded to bf16 once."""
    return _Float32Matmul()


def fp32_matmul_if_needed(precision: str, device: str = "cpu"):
    """`fp32_matmul()` where bf16 weights meet a CPU without bf16 kernels; otherwise nothing.
    Returns (context, note): the note says what was done, for the report (None when nothing)."""
    if precision == "fp32" or device != "cpu" or has_bf16_matmul_kernels():
        return contextlib.nullcontext(), None
    return fp32_matmul(), ("bf16 weights; matrix products in float32, rounded to bf16 once "
                           "(this CPU has no bf16 matrix kernels: pronounce.checks.cpu_bf16)")
