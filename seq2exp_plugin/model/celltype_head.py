"""The per-cell-type output head (``model.celltype_head``): a head with one output per training
cell type, each example reading its own (docs/celltypes.md). Shared by the Seq2Exp predictor and
the hierarchical CNN."""

from __future__ import annotations

import torch
from torch import Tensor


def own_output(outputs: Tensor, cell_type: Tensor | None) -> Tensor:
    """Each example's output of a head with one output per cell type.

    Args:
        outputs: the head's outputs ``(batch, n_outputs)``.
        cell_type: each example's output index ``(batch,)`` int64 (the batch's
            ``cell_type_index``); None: the only output (a shared head).

    Returns:
        ``(batch,)``.
    """
    if outputs.shape[-1] == 1:
        return outputs[:, 0]
    if cell_type is None:
        raise ValueError(f"a per-cell-type head ({outputs.shape[-1]} outputs) needs each example's "
                         "cell type: pass cell_type (the batch's cell_type_index)")
    index = torch.as_tensor(cell_type, device=outputs.device).long().reshape(-1, 1)
    if index.shape[0] != outputs.shape[0]:
        raise ValueError(f"cell_type has {index.shape[0]} entries for a batch of {outputs.shape[0]}")
    return outputs.gather(1, index).squeeze(1)
