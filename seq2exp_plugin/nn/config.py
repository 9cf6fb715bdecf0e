"""Configuration of a bidirectional Mamba stack, kept next to the stack (no torch import).

:mod:`seq2exp_plugin.model.config` re-exports :class:`StackConfig`; checkpoints store it as a
plain dict inside the model configuration.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StackConfig:
    """A bidirectional Mamba stack (Caduceus-style, pre-norm residual blocks with RMSNorm)."""

    #: Width of the residual stream.
    d_model: int = 128
    #: Mamba blocks in the stack.
    n_layers: int = 4
    #: State size of the selective scan, per channel.
    d_state: int = 16
    #: Width of Mamba's causal convolution.
    d_conv: int = 4
    #: Mamba's inner width as a multiple of ``d_model``.
    expand: int = 2
    #: Rank of the step-size projection; ``None`` = ceil(d_model / 16) as in mamba_ssm.
    dt_rank: int | None = None
    #: Initial step sizes, log-uniform in [dt_min, dt_max] (mamba_ssm's defaults): small steps
    #: mean long memory (about 1 / dt bp for the slowest state).
    dt_min: float = 0.001
    dt_max: float = 0.1
    #: Forward + reverse Mamba with tied in/out projections, combined by addition.
    bidirectional: bool = True
    #: Caduceus-PS parameter sharing: exact reverse-complement equivariance.
    rc_equivariant: bool = False
    #: Recompute each layer in backward (long windows fit in memory).
    checkpoint_layers: bool = False
    #: Caduceus' initialisation (the authors' public code): each block's ``out_proj`` divided by
    #: sqrt(n_layers) (GPT-2's scaling of residual branches), and the biases of the Linear
    #: layers that feed and read the stack (embeddings, heads) start at zero; the Mamba
    #: step-size bias keeps its initialisation. Off: PyTorch's defaults (the paper presets).
    caduceus_init: bool = False

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "d_state", "d_conv", "expand"):
            if getattr(self, name) < 1:
                raise ValueError(f"StackConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"StackConfig: need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")
