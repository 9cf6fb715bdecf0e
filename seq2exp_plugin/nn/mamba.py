"""The Mamba block (Gu & Dao, 2023), with mamba_ssm's parameter names and shapes.

``in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj`` have the names, shapes and
initialisation of ``mamba_ssm.modules.mamba_simple.Mamba``, so a state dict moves between this
CPU path, the CUDA path and mamba_ssm / Caduceus checkpoints.

The block is split in three steps - ``in_proj``, :meth:`Mamba.mix` (conv, projections and the
selective scan) and ``out_proj`` - so a bidirectional wrapper can compute the tied projections
once. Everything between the projections stays channels-last ``(batch, length, d_inner)``: that
is the layout the CPU scan kernel reads without copies.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .conv import causal_conv_silu
from .scan import selective_scan


class Mamba(nn.Module):
    """One selective-state-space mixer with mamba_ssm's parameter names, so its weights load both
    ways: ``(batch, length, d_model) -> (batch, length, d_model)``.

    Args:
        d_model: width of the input and output.
        d_state: state size per channel.
        d_conv: width of the causal convolution.
        expand: inner width as a multiple of ``d_model``.
        dt_rank: rank of the step-size projection; None: ceil(d_model / 16).
        dt_min, dt_max: initial step sizes, log-uniform in this range.
        dt_init_floor: smallest initial step size.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank or math.ceil(d_model / 16)

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
            padding=d_conv - 1, bias=True,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1)
        )
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        # Read by the optimiser set-up: no weight decay on the SSM's A and D.
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self._init_dt(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_dt(self, dt_min: float, dt_max: float, dt_init_floor: float) -> None:
        """mamba_ssm's initialisation: softplus(dt_proj.bias) log-uniform in [dt_min, dt_max]."""
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        dt = torch.exp(
            torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def forward(self, hidden: Tensor) -> Tensor:
        """Args: hidden ``(batch, length, d_model)``. Returns: ``(batch, length, d_model)``."""
        return self.out_proj(self.mix(self.in_proj(hidden)))

    def mix(self, xz: Tensor, reverse: bool = False, valid: Tensor | None = None) -> Tensor:
        """Conv + selective scan between the in- and out-projections, so that a bidirectional
        block can share them between its two directions.

        The conv input and the scan input are zeroed on the padding, so the conv reads zeros
        there (as beyond a sequence's end) and the state stays exactly 0 through it (the reverse
        scan starts on it).

        Args:
            xz: the in-projection ``(batch, length, 2 * d_inner)``.
            reverse: run right-to-left, exactly as ``mix(xz.flip(1)).flip(1)`` but without
                copying the sequence.
            valid: ``(batch, length, 1)``, 1 on a sequence's positions and 0 on the padding
                after it, for a batch of sequences of different lengths; None: no padding.

        Returns:
            ``(batch, length, d_inner)``; on valid positions, what each sequence gets alone.
        """
        x, z = xz.split(self.d_inner, dim=-1)
        if valid is not None:
            x = x * valid.to(x.dtype)
        x = causal_conv_silu(x, self.conv1d.weight[:, 0, :], self.conv1d.bias, reverse)
        if valid is not None:
            x = x * valid.to(x.dtype)
        x_dbl = self.x_proj(x)
        dt, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight)  # the bias is added inside the scan
        y = selective_scan(
            x.transpose(1, 2), delta.transpose(1, 2), -torch.exp(self.A_log.float()),
            B.transpose(1, 2), C.transpose(1, 2), self.D.float(), z=z.transpose(1, 2),
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True, reverse=reverse,
        )
        return y.transpose(1, 2)
