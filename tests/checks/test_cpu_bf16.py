"""pronounce.checks.cpu_bf16: bf16 products in float32 on a CPU, rounded once, as a GPU's bf16 GEMM.

Each product under the mode must equal the float32 product of the (exactly upcast) operands,
rounded to bf16 once, bit for bit; the backward pass must go through the mode too; float32 work
must pass through untouched.
"""

import contextlib

import pytest
import torch
import torch.nn.functional as F

from pronounce.checks import cpu_bf16


class CountingMode(cpu_bf16._Float32Matmul):
    """The mode, counting the products it took over."""

    def __init__(self):
        super().__init__()
        self.taken = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if (func.overloadpacket in cpu_bf16.MATMULS or func.overloadpacket in cpu_bf16.IN_PLACE) and \
                cpu_bf16.has_cpu_bf16((args, kwargs)):
            self.taken.append(func.overloadpacket)
        return super().__torch_dispatch__(func, types, args, kwargs)


def bf16(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).bfloat16()


def rounded_once(fn, *tensors):
    """fn on float32 copies, rounded to bf16 once: what the mode must give."""
    return fn(*(t.float() for t in tensors)).bfloat16()


@pytest.mark.parametrize("grad_mode", ["no_grad", "inference_mode", "enable_grad"])
@pytest.mark.parametrize("op", ["mm", "addmm", "bmm", "baddbmm", "linear", "matmul", "einsum", "conv1d", "conv2d"])
def test_each_product_is_the_float32_product_rounded_once(op, grad_mode):
    cases = {
        "mm": (torch.mm, [(7, 33), (33, 5)]),
        "addmm": (lambda c, a, b: torch.addmm(c, a, b, beta=0.5, alpha=2.0), [(5,), (7, 33), (33, 5)]),
        "bmm": (torch.bmm, [(3, 7, 33), (3, 33, 5)]),
        "baddbmm": (lambda c, a, b: torch.baddbmm(c, a, b), [(3, 7, 5), (3, 7, 33), (3, 33, 5)]),
        "linear": (F.linear, [(2, 7, 33), (5, 33), (5,)]),
        "matmul": (torch.matmul, [(2, 3, 7, 33), (33, 5)]),
        "einsum": (lambda a, b: torch.einsum("bik,bkj->bij", a, b), [(3, 7, 33), (3, 33, 5)]),
        "conv1d": (lambda x, w: F.conv1d(x, w, padding=1, groups=4), [(2, 8, 19), (8, 2, 3)]),
        "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=2), [(2, 3, 17, 11), (6, 3, 3, 3), (6,)]),
    }
    fn, shapes = cases[op]
    tensors = [bf16(*s, seed=i) for i, s in enumerate(shapes)]
    mode = CountingMode()
    with getattr(torch, grad_mode)(), mode:
        got = fn(*tensors)
    assert mode.taken, f"{op} reached no product the mode took over"
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, rounded_once(fn, *tensors))


def test_a_product_into_a_given_tensor_lands_there():
    """torch.mm(a, b, out=tile) (trl's chunked log-prob writes its logits tiles so) and in-place
    addmm_ write the rounded float32 product into the given bf16 tensor, not into a copy."""
    a, b, c = bf16(7, 33, seed=1), bf16(33, 5, seed=2), bf16(7, 5, seed=3)
    tile, acc = torch.full((7, 5), float("nan"), dtype=torch.bfloat16), c.clone()
    mode = CountingMode()
    with mode:
        returned = torch.mm(a, b, out=tile)
        acc.addmm_(a, b)
    assert returned is tile and len(mode.taken) == 2
    assert torch.equal(tile, rounded_once(torch.mm, a, b))
    assert torch.equal(acc, rounded_once(torch.addmm, c, a, b))


def test_trl_chunked_log_probs_match_float32():
    """trl's fused LM head (the training loss) in bf16 under the mode: its per-token log-probs
    and the hidden states' gradient track a float32 run of the same inputs."""
    from trl.kernels import ChunkedLogProbFunction

    hidden, weight = bf16(12, 64, seed=1), (bf16(300, 64, seed=2).float() * 0.2).bfloat16()  # logits ~N(0, 2.6)
    targets = torch.randint(0, 300, (12,), generator=torch.Generator().manual_seed(3))

    def run(h, w):
        h = h.detach().requires_grad_()
        log_probs = ChunkedLogProbFunction.apply(h, w, None, targets, 1.0, 128, None, 1.0, ("entropy",))[0]
        log_probs.sum().backward()
        return log_probs, h.grad

    expected, expected_grad = run(hidden.float(), weight.float())
    with cpu_bf16.fp32_matmul():
        got, grad = run(hidden, weight)
    assert torch.isfinite(got).all() and torch.isfinite(grad).all()
    assert torch.allclose(got.float(), expected, rtol=0.01, atol=0.02)  # bf16 logits: ~3 significant digits
    assert torch.allclose(grad.float(), expected_grad, rtol=0.02, atol=0.01)


def test_the_backward_pass_goes_through_the_mode():
    """A bf16 linear layer's gradients: products in the backward are taken over too, and each
    gradient is its float32 product rounded once (grad_x = g W, grad_W = g^T x)."""
    x, w = bf16(4, 9, 33, seed=1).requires_grad_(), bf16(5, 33, seed=2).requires_grad_()
    g = bf16(4, 9, 5, seed=3)
    mode = CountingMode()
    with mode:
        y = F.linear(x, w)
        forward = len(mode.taken)
        y.backward(g)
    assert forward >= 1 and len(mode.taken) >= forward + 2  # grad_x and grad_w
    assert x.grad.dtype == w.grad.dtype == torch.bfloat16
    assert torch.equal(x.grad, rounded_once(lambda g, w: g @ w, g, w.detach()))
    assert torch.equal(w.grad, rounded_once(lambda g, x: g.reshape(-1, 5).T @ x.reshape(-1, 33), g, x.detach()))


def test_a_convolution_backward_returns_bf16_gradients():
    x, w = bf16(2, 3, 17, 11, seed=1).requires_grad_(), bf16(6, 3, 3, 3, seed=2).requires_grad_()
    mode = CountingMode()
    with mode:
        F.conv2d(x, w).float().square().sum().backward()
    assert torch.ops.aten.convolution_backward in mode.taken
    assert x.grad.dtype == w.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad).all()


def test_float32_and_other_ops_pass_through():
    a, b = torch.randn(7, 33), torch.randn(33, 5)
    mode = CountingMode()
    with mode:
        got = a @ b
        s = F.scaled_dot_product_attention(*(bf16(1, 2, 4, 8, seed=i) for i in range(3)))
    assert not mode.taken and got.dtype == torch.float32 and torch.equal(got, a @ b)
    assert s.dtype == torch.bfloat16  # attention keeps its own bf16 kernel


def test_a_tiny_transformer_layer_in_bf16_tracks_float32():
    """A whole bf16 block (attention, MLP, norm) under the mode stays within bf16's error of float32."""
    layer = torch.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
    x = torch.randn(2, 10, 64, generator=torch.Generator().manual_seed(0))
    expected = layer(x)
    with cpu_bf16.fp32_matmul():
        got = layer.bfloat16()(x.bfloat16())
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("precision,device,kernels,applies", [
    ("bf16-any", "cpu", False, True), ("bf16-any", "cpu", True, False),
    ("bf16-any", "cuda", False, False), ("fp32", "cpu", False, False)])
def test_the_mode_applies_only_to_bf16_on_a_cpu_without_kernels(monkeypatch, precision, device, kernels, applies):
    monkeypatch.setattr(cpu_bf16, "has_bf16_matmul_kernels", lambda: kernels)
    context, note = cpu_bf16.fp32_matmul_if_needed(precision, device)
    assert isinstance(context, cpu_bf16._Float32Matmul) == applies
    assert (note is not None) == applies and (applies or isinstance(context, contextlib.nullcontext))
