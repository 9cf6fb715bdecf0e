"""Input embeddings shared by the generator and the predictor.

The authors' hard run adds a learned absolute position table to every position's embedding and
feeds the generator the same DNA + signal embedding as the predictor (see
``Seq2ExpConfig.position_table`` and ``Seq2ExpConfig.generator_signals``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PositionTable(nn.Module):
    """A learned ``(length, d_model)`` table, one row per window position, initialised at zero.

    ``forward(length)`` returns the whole table (inputs must be exactly ``length`` long);
    ``forward(index)`` the rows of the given positions (a packed sequence's kept positions).

    Args:
        length: window length, in bp (one row per position).
        d_model: width of each row.
    """

    def __init__(self, length: int, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(length, d_model))

    def forward(self, positions: int | Tensor) -> Tensor:
        """Args: positions: the window length (int, must equal the table's), or position
        indices ``(batch, L')``. Returns: ``(length, d_model)`` or ``(batch, L', d_model)``."""
        if isinstance(positions, Tensor):
            return self.weight[positions]
        if positions != self.weight.shape[0]:
            raise ValueError(f"position table: the model has {self.weight.shape[0]} positions, the "
                             f"input {positions}; position_table must equal the window length")
        return self.weight


def signal_input(signals: Tensor, transform: str) -> Tensor:
    """What the signal embedding reads: raw values ("identity", the paper), ``log1p``, or
    "relative": ``log1p(s / mean of s over the window)`` per track (scale-free).

    Args:
        signals: signal tracks ``(batch, n_signals, L)``.
        transform: "identity", "log1p" or "relative".

    Returns:
        Transformed signals ``(batch, n_signals, L)``.
    """
    if transform == "relative":
        signals = signals.clamp_min(0)
        return torch.log1p(signals / (signals.mean(-1, keepdim=True) + 1e-6))
    return torch.log1p(signals.clamp_min(0)) if transform == "log1p" else signals
