"""The ``triton`` backend of causal_conv_silu under Triton's CPU interpreter, against
torch's conv1d in float64 (helpers from test_conv.py). Small blocks make the small shapes
span several position and channel blocks, with partial ones."""

from __future__ import annotations

import pytest
import torch

from seq2exp_plugin.nn.conv import causal_conv_silu
from test_conv import inputs, reference, rel_err
from triton_interpreter import interpreted_module

triton_conv = interpreted_module("seq2exp_plugin.nn.triton_conv")

HALF_TOL = {torch.bfloat16: 1e-2, torch.float16: 2e-3}  # output rounding: 2^-8, 2^-11


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(triton_conv, "BLOCK_L", 8)
    monkeypatch.setattr(triton_conv, "BLOCK_D", 4)


def grads_of(y, leaves, gy):
    return torch.autograd.grad(y, leaves, gy.to(y.dtype))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", [(2, 21, 6, 4, True, True), (1, 3, 5, 4, False, True),
                                  (3, 17, 9, 3, True, False)])
def test_matches_conv1d_forward_and_gradients(reverse, case):
    # lengths 21 / 17: several blocks of 8, the last partial; 6 / 9 channels: a partial block;
    # L = 3 < K: every tap runs off the sequence somewhere
    batch, length, dim, k, strided, with_bias = case
    x64, w64, b64 = inputs(batch, length, dim, k, strided)
    leaves64 = [x64.detach().clone().requires_grad_(), w64.clone().requires_grad_()]
    if with_bias:
        leaves64.append(b64.clone().requires_grad_())
    gy = torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(1),
                     dtype=torch.float64)
    y_ref = reference(leaves64[0], leaves64[1], leaves64[2] if with_bias else None, reverse)
    g_ref = grads_of(y_ref, leaves64, gy)
    if strided:  # a channel slice of a wider tensor, as Mamba's x of its in-projection
        wide = torch.zeros(batch, length, 2 * dim)
        wide[..., :dim] = x64.float()
        x = wide[..., :dim].requires_grad_()
    else:
        x = x64.float().requires_grad_()
    leaves = [x] + [t.detach().float().requires_grad_() for t in leaves64[1:]]
    y = causal_conv_silu(leaves[0], leaves[1], leaves[2] if with_bias else None, reverse,
                         backend="triton")
    assert y.shape == (batch, length, dim) and y.is_contiguous() and y.dtype == torch.float32
    assert rel_err(y, y_ref) <= 1e-5
    for name, g, r in zip(("x", "weight", "bias"), grads_of(y, leaves, gy), g_ref):
        assert rel_err(g, r) <= 1e-5, name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_activations(dtype):
    # bf16/fp16 activations with float32 weights, as under autocast
    x64, w64, b64 = inputs(2, 19, 6, 4, False, seed=2)
    x64 = x64.to(dtype).double()  # the reference sees the same rounded inputs
    leaves64 = [t.clone().requires_grad_() for t in (x64, w64, b64)]
    gy = torch.randn(2, 19, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y_ref = reference(*leaves64, True)
    g_ref = grads_of(y_ref, leaves64, gy)
    leaves = [x64.to(dtype).requires_grad_(), w64.float().requires_grad_(),
              b64.float().requires_grad_()]
    y = causal_conv_silu(*leaves, True, backend="triton")
    assert y.dtype == dtype
    assert rel_err(y, y_ref) <= HALF_TOL[dtype]
    for name, g, r, leaf in zip(("x", "weight", "bias"), grads_of(y, leaves, gy), g_ref, leaves):
        assert g.dtype == leaf.dtype, name
        assert rel_err(g, r) <= HALF_TOL[dtype], name
