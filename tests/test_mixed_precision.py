"""bf16 mixed precision (Lightning's ``precision="bf16-mixed"`` is torch.autocast): on a fixed
batch the loss and gradients of a tiny Seq2Exp-soft model agree with float32.

CPU autocast here; on a GPU the same model code runs under CUDA autocast with the triton kernels.
Tolerances (measured on this fixed batch: loss 2e-4, gradient norm 2.5e-2, cosine 0.9997):
loss and its terms within 2e-3 relative; all gradients together within 0.1 relative in norm
and cosine >= 0.995. bf16 keeps 8 bits of mantissa (4e-3 per rounding), and the small gradients
of the dt projections pass through exp and softplus of bf16 activations.
"""

from __future__ import annotations

import math

import pytest
import torch

from seq2exp_plugin.model.seq2exp import Seq2ExpModel, seq2exp_loss
from test_model import batch, tiny_config

STACK = {"d_model": 16, "n_layers": 2, "d_state": 4}


def loss_and_grads(model, inputs, target, bf16: bool):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(*inputs)
        losses = seq2exp_loss(out, target, kl_weight=0.01)
    losses["loss"].backward()
    grads = {n: p.grad.double().clone() for n, p in model.named_parameters()
             if p.grad is not None}
    return out, {k: v.detach().double() for k, v in losses.items()}, grads


def test_bf16_autocast_loss_and_gradients_match_float32():
    torch.manual_seed(0)
    model = Seq2ExpModel(tiny_config(generator=STACK, predictor=STACK)).eval()  # mean mask
    inputs = batch(length=256, size=2)
    target = torch.tensor([0.5317, 1.4821])
    _, l32, g32 = loss_and_grads(model, inputs, target, bf16=False)
    out, l16, g16 = loss_and_grads(model, inputs, target, bf16=True)
    assert out.expression.dtype == torch.bfloat16  # autocast was active
    # the mask's Beta parameters, mask and KL stay float32 under autocast
    assert out.mask.mask.dtype == out.mask.kl.dtype == out.mask.distribution.alpha.dtype \
        == torch.float32
    for k in ("loss", "task", "kl"):
        assert abs(l16[k] - l32[k]) <= 2e-3 * abs(l32[k]), k
    assert set(g16) == set(g32) == {n for n, _ in model.named_parameters()}
    assert all(torch.isfinite(g).all() for g in g16.values())
    diff = math.sqrt(sum(((g16[n] - g32[n]) ** 2).sum() for n in g32))
    norm32 = math.sqrt(sum((g ** 2).sum() for g in g32.values()))
    norm16 = math.sqrt(sum((g ** 2).sum() for g in g16.values()))
    cosine = sum((g16[n] * g32[n]).sum() for n in g32) / (norm16 * norm32)
    assert diff <= 0.1 * norm32
    assert cosine >= 0.995


def test_training_step_loss_reads_the_target_unrounded_under_bf16():
    """Training and validation compute eq. 3 with ``seq2exp_loss`` in float32: a target of
    2.3457 is not rounded to bfloat16's 2.34375 (the former step cast it to the prediction's
    dtype, which costs a loss of 1e-3 on this target)."""
    from seq2exp_plugin.train.config import RunConfig
    from seq2exp_plugin.train.module import Seq2ExpLightning

    torch.manual_seed(0)
    run = RunConfig(preset="soft", data={"window": 256},
                    model={"generator": STACK, "predictor": STACK, "pool_width": 32})
    module = Seq2ExpLightning.from_run_config(run).eval()
    seq, signals, features = batch(length=256, size=2)
    target = torch.tensor([2.3457, 0.5317])
    assert torch.tensor(2.3457).bfloat16().item() == 2.34375  # what the old step trained on
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module.step({"seq": seq, "signals": signals, "features": features, "target": target})
    assert out["prediction"].dtype == torch.bfloat16  # autocast was active
    expected = torch.nn.functional.smooth_l1_loss(out["prediction"].float(), target)
    assert out["task"].dtype == torch.float32
    assert out["task"].item() == pytest.approx(expected.item(), rel=1e-6)
