"""The ``triton`` selective-scan backend under Triton's CPU interpreter, against the float64
sequential reference (helpers from test_scan.py). Small chunks and channel blocks make the
small shapes cross several chunks and a partial channel block."""

from __future__ import annotations

import pytest
import torch

from seq2exp_plugin.nn import scan
from test_scan import NAMES, TOL, check_against_reference, make_inputs, rel_err, run
from triton_interpreter import interpreted_module

triton_scan = interpreted_module("seq2exp_plugin.nn.triton_scan")

# tolerances for half-precision inputs: the reference runs in float64 on the same rounded
# inputs, so what remains is the rounding of outputs and gradients to bf16 (2^-8) / fp16 (2^-11)
HALF_TOL = {torch.bfloat16: 1e-2, torch.float16: 2e-3}


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    monkeypatch.setattr(triton_scan, "CHUNK", 8)
    monkeypatch.setattr(triton_scan, "BLOCK_D", 4)


# The interpreter runs an associative scan one element at a time: the shapes are as small as
# the cases allow (d_state 4 where the state count does not matter).
@pytest.mark.parametrize("reverse", [False, True])
def test_matches_reference_d_state_16(reverse):
    # L = 27: four chunks of 8, the last partial; d = 6: one full and one partial channel block
    check_against_reference("triton", 2, 6, 16, 27, "all", reverse)


@pytest.mark.parametrize("opts,reverse", [("none", True), ("D_bias", False),
                                          ("z_softplus", True)])
def test_matches_reference_without_some_options(opts, reverse):
    check_against_reference("triton", 2, 6, 4, 27, opts, reverse)


@pytest.mark.parametrize("segments,reverse", [(3, False), (3, True), (2, True)])
def test_segmented_scan_matches_reference(monkeypatch, segments, reverse):
    # L = 45: six chunks of 8 (the last partial) in segments of two or three chunks
    monkeypatch.setattr(triton_scan, "SEGMENTS", segments)
    check_against_reference("triton", 2, 6, 4, 45, "all", reverse)


@pytest.mark.parametrize("reverse", [False, True])
def test_matches_reference_d_state_1(reverse):
    check_against_reference("triton", 3, 5, 1, 29, "all", reverse)


def test_channels_last_layout_and_odd_state_count():
    # the Mamba block's layout (unit stride along channels); n = 5 pads the state axis to 8
    check_against_reference("triton", 2, 9, 5, 24, "all", True, layout="channels_last")


def test_large_steps():
    # decays down to exp(-200) next to steps that remember across every chunk
    check_against_reference("triton", 1, 8, 4, 64, "D_bias", False, regime="large")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(dtype):
    inputs, softplus = make_inputs(2, 6, 4, 21, "all", seed=4)
    # A, D and delta_bias stay float32 as in the Mamba block; the activations are half
    half = {k: (None if v is None else v.to(dtype if v.dim() == 3 else torch.float32))
            for k, v in inputs.items()}
    exact = {k: (None if v is None else v.double()) for k, v in half.items()}
    gy = torch.randn(2, 6, 21, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y_ref, g_ref, _ = run("reference", exact, softplus, True, gy)
    y, grads, _ = run("triton", half, softplus, True, gy.to(dtype))
    assert y.dtype == dtype
    tol = HALF_TOL[dtype]
    assert rel_err(y, y_ref) <= tol
    for k in NAMES:
        assert grads[k].dtype == half[k].dtype, k
        assert rel_err(grads[k], g_ref[k]) <= tol, k


def test_empty_sequence():
    inputs, softplus = make_inputs(2, 5, 3, 0, "all", dtype=torch.float32)
    y, grads, _ = run("triton", inputs, softplus, False, torch.zeros(2, 5, 0))
    assert y.shape == (2, 5, 0)
    for k in NAMES:
        assert grads[k] is None or (grads[k].shape == inputs[k].shape and not grads[k].any()), k


def test_forward_without_grad_matches_reference():
    inputs, softplus = make_inputs(1, 4, 16, 19, "all", seed=2)
    y_ref = scan.selective_scan(*(inputs[k] for k in ("u", "delta", "A", "B", "C")),
                                D=inputs["D"], z=inputs["z"], delta_bias=inputs["delta_bias"],
                                delta_softplus=softplus, backend="reference")
    f32 = {k: v.float() for k, v in inputs.items()}
    with torch.no_grad():
        y = scan.selective_scan(*(f32[k] for k in ("u", "delta", "A", "B", "C")), D=f32["D"],
                                z=f32["z"], delta_bias=f32["delta_bias"],
                                delta_softplus=softplus, backend="triton")
    assert rel_err(y, y_ref) <= TOL


def test_cuda_tensors_choose_triton(monkeypatch):
    monkeypatch.setattr(scan, "_triton_imports", lambda: True)
    assert scan._auto_backend("cuda") == "triton"
    monkeypatch.setattr(scan, "_triton_imports", lambda: False)
    monkeypatch.setattr(scan, "_load_mamba_scan_fn", lambda: object())
    assert scan._auto_backend("cuda") == "cuda"
    monkeypatch.setattr(scan, "_load_mamba_scan_fn", lambda: None)
    assert scan._auto_backend("cuda") == "torch"
    assert scan._resolve_backend("triton", torch.device("cpu")) == "triton"
