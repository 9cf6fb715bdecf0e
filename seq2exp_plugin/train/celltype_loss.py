"""The cross-cell-type term of the hybrid loss (``train.loss: hybrid``).

The hierarchical-model thesis (chapter 3) adds ``w x (1 - Pearson across cell types)`` per gene
to the MSE because the MSE alone lets a model predict a gene's mean over cell types and still
score well: the differences between cell types are small beside those between genes. The
term asks for the right ordering of each gene's cell types, whatever their level.

A Pearson needs at least three points to be more than a sign: with two cell types the centred
values are ``+-(d/2)`` (``d`` the difference between them), so the Pearson is +1 or -1, flat
almost everywhere, and gives no gradient. There, and for a gene whose targets do not vary
across its cell types (Pearson undefined), the term is the squared error of the centred values
instead, ``mean_c ((p_c - mean p) - (t_c - mean t))^2`` (``(d_p - d_t)^2 / 4`` for two cell
types): it asks for the measured difference between the cell types, and for none where there
is none. A gene with one cell type in the batch adds nothing (docs/celltypes.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Keeps the Pearson's denominator away from 0 when a gene's predictions are all equal; a
#: gene's targets whose centred sum of squares is below it count as flat.
EPS = 1e-8


def gene_index(gene_ids) -> Tensor:
    """``(batch,)`` int64: the same number for the examples of one gene, ``0 .. n_genes - 1``."""
    numbers: dict[str, int] = {}
    return torch.tensor([numbers.setdefault(str(g), len(numbers)) for g in gene_ids], dtype=torch.long)


def cross_celltype_loss(prediction: Tensor, target: Tensor, gene: Tensor) -> Tensor:
    """Mean over the batch's genes of ``1 - Pearson`` of prediction vs target across each
    gene's cell types (the centred squared error with two cell types or flat targets).

    Args:
        prediction, target: ``(batch,)``, one example per (gene, cell type).
        gene: ``(batch,)`` int64 from :func:`gene_index`.

    Returns:
        A scalar (0 when no gene has two cell types in the batch).
    """
    gene = gene.to(prediction.device)
    n_genes = int(gene.max()) + 1 if gene.numel() else 0

    def per_gene(values: Tensor) -> Tensor:
        return values.new_zeros(n_genes).index_add(0, gene, values)

    count = per_gene(torch.ones_like(prediction))
    p = prediction - (per_gene(prediction) / count)[gene]
    t = target - (per_gene(target) / count)[gene]
    tt = per_gene(t * t)
    pearson = per_gene(p * t) / torch.sqrt(per_gene(p * p) * tt + EPS)
    centred_se = per_gene((p - t) ** 2) / count
    use_pearson = (count >= 3) & (tt > EPS)
    term = torch.where(use_pearson, 1 - pearson, centred_se)
    scored = count >= 2
    if not scored.any():
        return prediction.new_zeros(())
    return term[scored].mean()
