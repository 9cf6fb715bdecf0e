"""causal_conv_silu (Mamba's conv1d + SiLU, channels-last) against torch's conv1d in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seq2exp_plugin.nn import _build, conv
from seq2exp_plugin.nn.conv import causal_conv_silu

needs_kernel = pytest.mark.skipif(_build.load_library() is None,
                                  reason=f"CPU kernel not built: {_build.build_error()}")
BACKENDS = [pytest.param("cpu", marks=needs_kernel), "torch"]


def reference(x, weight, bias, reverse):
    """silu(conv1d) on the channel-first transpose; reverse = flip, convolve, flip back."""
    xt = x.transpose(1, 2)
    if reverse:
        xt = xt.flip(-1)
    k = weight.shape[1]
    y = F.conv1d(xt, weight[:, None, :], bias, padding=k - 1, groups=weight.shape[0])
    y = y[..., : x.shape[1]]
    if reverse:
        y = y.flip(-1)
    return F.silu(y).transpose(1, 2)


def inputs(batch, length, dim, k, strided, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(batch, length, 2 * dim, generator=g, dtype=dtype)
    x = wide[..., :dim] if strided else wide[..., :dim].contiguous()  # a slice, as in Mamba
    return x, torch.randn(dim, k, generator=g, dtype=dtype), torch.randn(dim, generator=g, dtype=dtype)


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [(2, 300, 20, 4, True, True), (3, 2, 20, 4, False, True),
                                  (1, 1, 7, 4, True, False), (2, 50, 33, 3, False, False)])
def test_matches_conv1d_forward_and_gradients(backend, reverse, case):
    batch, length, dim, k, strided, with_bias = case
    x64, w64, b64 = inputs(batch, length, dim, k, strided)
    b64 = b64 if with_bias else None
    gy = torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    leaves64 = [t.detach().clone().requires_grad_() for t in (x64, w64) + ((b64,) if with_bias else ())]
    y_ref = reference(leaves64[0], leaves64[1], leaves64[2] if with_bias else None, reverse)
    g_ref = torch.autograd.grad(y_ref, leaves64, gy)
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        leaves = [t.detach().to(dtype).requires_grad_() for t in leaves64]
        xs = leaves[0]
        if strided:  # keep the slice's strides
            wide = torch.zeros(batch, length, 2 * dim, dtype=dtype)
            wide[..., :dim] = xs.detach()
            xs = wide[..., :dim].requires_grad_()
            leaves[0] = xs
        y = causal_conv_silu(xs, leaves[1], leaves[2] if with_bias else None, reverse, backend=backend)
        assert y.shape == (batch, length, dim) and y.is_contiguous()
        assert rel_err(y, y_ref) <= tol
        grads = torch.autograd.grad(y, leaves, gy.to(dtype))
        for name, g, r in zip(("x", "weight", "bias"), grads, g_ref):
            assert rel_err(g, r) <= tol, (dtype, name)


@needs_kernel
@pytest.mark.parametrize("reverse", [False, True])
def test_kernel_threads_split_rows_across_batches(monkeypatch, reverse):
    # three threads over 2 x 37 rows: shares start mid-sequence and straddle the batch boundary;
    # each row's weight/bias terms must be counted exactly once
    monkeypatch.setattr(conv, "SMALL_WORK", 0)
    old = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        x, w, b = (t.requires_grad_() for t in inputs(2, 37, 24, 4, True))
        y = causal_conv_silu(x, w, b, reverse, backend="cpu")
        gy = torch.randn_like(y)
        grads = torch.autograd.grad(y, (x, w, b), gy)
    finally:
        torch.set_num_threads(old)
    y_ref = reference(x, w, b, reverse)
    g_ref = torch.autograd.grad(y_ref, (x, w, b), gy)
    assert rel_err(y, y_ref) <= 1e-12
    for g, r in zip(grads, g_ref):
        assert rel_err(g, r) <= 1e-12


@needs_kernel
@pytest.mark.parametrize("reverse", [False, True])
def test_kernel_gradcheck_float64(reverse):
    x, w, b = (t.requires_grad_() for t in inputs(2, 9, 5, 4, True, seed=3))
    assert torch.autograd.gradcheck(lambda *t: causal_conv_silu(*t, reverse, backend="cpu"),
                                    (x, w, b), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_bad_arguments_are_clear_errors():
    x = torch.randn(1, 10, 4)
    with pytest.raises(ValueError, match="weight"):
        causal_conv_silu(x, torch.randn(5, 4), None)
    with pytest.raises(ValueError, match="backend"):
        causal_conv_silu(x, torch.randn(4, 4), None, backend="cuda")
    if _build.load_library() is not None:
        with pytest.raises(ValueError, match="float32/float64"):
            causal_conv_silu(x.half(), torch.randn(4, 4).half(), None, backend="cpu")
