"""Bidirectional Mamba stacks (Caduceus, Schiff et al. 2024) and reverse-complement equivariance.

- :class:`BiMamba`: a forward and a reverse :class:`~seq2exp_plugin.nn.mamba.Mamba` whose in/out
  projections are tied (Caduceus ``bidirectional_weight_tie``), combined by addition. Since the
  projections are position-wise and bias-free, they are computed once:
  ``out_proj(mix_fwd(xz) + mix_rev(xz))`` with ``xz = in_proj(x)`` equals
  ``mamba_fwd(x) + mamba_rev(x.flip(1)).flip(1)`` exactly, at 56% of the matmul work.
- :class:`BiMambaStack`: pre-norm residual blocks ``x + mixer(RMSNorm(x))`` and a final RMSNorm,
  named like Caduceus' backbone (``layers.{i}.mixer.mamba_fwd...``, ``layers.{i}.norm``,
  ``norm_f``), with optional per-layer activation checkpointing.
- :func:`reverse_complement` and :func:`rc_symmetrize`: Caduceus-PS-style parameter sharing. One
  shared network runs on the input and on its reverse complement, and the second output is
  flipped back and added, so per-position outputs satisfy ``f(RC(x)) = flip(f(x))`` exactly.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .config import StackConfig
from .mamba import Mamba


class BiMamba(nn.Module):
    """Forward + reverse Mamba with tied in/out projections (Caduceus' BiMamba), so each
    projection is computed once for both directions: ``(B, L, D) -> (B, L, D)``.

    Args:
        d_model, d_state, d_conv, expand, dt_rank, dt_min, dt_max: as :class:`Mamba`.
        bidirectional: add the reverse direction; False: the forward Mamba alone.
    """

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int,
                 dt_rank: int | None, bidirectional: bool = True, dt_min: float = 0.001,
                 dt_max: float = 0.1) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.mamba_fwd = Mamba(d_model, d_state, d_conv, expand, dt_rank, dt_min, dt_max)
        if bidirectional:
            self.mamba_rev = Mamba(d_model, d_state, d_conv, expand, dt_rank, dt_min, dt_max)
            self.mamba_rev.in_proj.weight = self.mamba_fwd.in_proj.weight
            self.mamba_rev.out_proj.weight = self.mamba_fwd.out_proj.weight

    def forward(self, hidden: Tensor, valid: Tensor | None = None) -> Tensor:
        """Args: hidden ``(B, L, D)``; valid ``(B, L, 1)`` or None (:meth:`Mamba.mix`).
        Returns: ``(B, L, D)``."""
        xz = self.mamba_fwd.in_proj(hidden)
        y = self.mamba_fwd.mix(xz, valid=valid)
        if self.bidirectional:
            y = y + self.mamba_rev.mix(xz, reverse=True, valid=valid)
        return self.mamba_fwd.out_proj(y)


class Block(nn.Module):
    """Pre-norm residual block ``x + mixer(norm(x))`` with a :class:`BiMamba` mixer.

    Args:
        config: the stack's configuration.
    """

    def __init__(self, config: StackConfig) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(config.d_model, eps=1e-5)
        self.mixer = BiMamba(config.d_model, config.d_state, config.d_conv, config.expand,
                             config.dt_rank, config.bidirectional, config.dt_min, config.dt_max)

    def forward(self, hidden: Tensor, valid: Tensor | None = None) -> Tensor:
        """Args: hidden ``(B, L, d_model)``; valid ``(B, L, 1)`` or None. Returns: ``(B, L, d_model)``."""
        # one argument unless padded: attribution hooks (DeepLIFT) expect one-input modules
        mixer_args = () if valid is None else (valid,)
        return hidden + self.mixer(self.norm(hidden), *mixer_args)


class BiMambaStack(nn.Module):
    """``n_layers`` blocks and a final RMSNorm, Caduceus' backbone:
    ``(B, L, d_model) -> (B, L, d_model)``.

    Args:
        config: sizes, directions, layer checkpointing and Caduceus' initialisation
            (``rc_equivariant`` is applied by the caller, through :func:`rc_symmetrize`).
    """

    def __init__(self, config: StackConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm_f = nn.RMSNorm(config.d_model, eps=1e-5)
        if config.caduceus_init:
            with torch.no_grad():  # the reverse Mamba's out_proj is the forward one's (tied)
                for layer in self.layers:
                    layer.mixer.mamba_fwd.out_proj.weight /= math.sqrt(config.n_layers)

    def forward(self, hidden: Tensor, valid: Tensor | None = None) -> Tensor:
        """Run the stack.

        Args:
            hidden: embeddings ``(B, L, d_model)``.
            valid: ``(B, L)`` (bool or 0/1) for a batch of sequences of different lengths, each
                padded at its end; None: no padding.

        Returns:
            ``(B, L, d_model)``; every position of a sequence gets what the stack gives that
            sequence alone (:meth:`~seq2exp_plugin.nn.mamba.Mamba.mix`), the padding's outputs
            are meaningless.
        """
        extra = () if valid is None else (valid.unsqueeze(-1),)
        for layer in self.layers:
            if self.config.checkpoint_layers and torch.is_grad_enabled():
                hidden = checkpoint(layer, hidden, *extra, use_reentrant=False)
            else:
                hidden = layer(hidden, *extra)
        return self.norm_f(hidden)


def zero_linear_biases_(module: nn.Module) -> None:
    """Caduceus' initialisation around a stack, in place: every Linear bias starts at zero, except
    inside the Mamba blocks (the step-size bias sets the initial memory lengths).

    Args:
        module: the model or part whose Linear biases are zeroed.
    """
    inside = {id(m) for block in module.modules() if isinstance(block, Mamba) for m in block.modules()}
    for layer in module.modules():
        if isinstance(layer, nn.Linear) and layer.bias is not None and id(layer) not in inside:
            nn.init.zeros_(layer.bias)


def reverse_complement(one_hot: Tensor) -> Tensor:
    """Reverse complement of a one-hot sequence: in A, C, G, T order, flipping the channels
    complements the bases.

    Args:
        one_hot: ``(B, 4, L)``, channel-first, A, C, G, T.

    Returns:
        ``(B, 4, L)``.
    """
    return one_hot.flip(1, 2)


def rc_symmetrize(encode: Callable[..., Tensor], seq: Tensor, *tracks: Tensor | None) -> Tensor:
    """``encode(x) + flip(encode(RC(x)))``, which makes ``encode`` exactly reverse-complement
    equivariant (Caduceus-PS), computed as one batch of twice the size.

    Args:
        encode: ``encode(seq, *tracks) -> (B, L, D)``.
        seq: one-hot ``(B, 4, L)``.
        tracks: strand-symmetric per-position tracks (signals ``(B, d, L)``, mask ``(B, L)``;
            None allowed), flipped along L for the reverse-complement copy.

    Returns:
        ``(B, L, D)``.
    """
    batch = seq.shape[0]
    both_seq = torch.cat([seq, reverse_complement(seq)])
    both_tracks = [None if t is None else torch.cat([t, t.flip(-1)]) for t in tracks]
    out = encode(both_seq, *both_tracks)
    return out[:batch] + out[batch:].flip(1)
