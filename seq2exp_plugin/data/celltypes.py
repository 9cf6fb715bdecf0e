"""Several cell types of one gene table as one dataset: an example per (gene, cell type).

Seq2Exp reads cell identity from the signals, so one model serves every cell type: each
example is the gene's window with that cell type's signals, promoter-activity feature and
target (one :class:`~seq2exp_plugin.data.windows.WindowDataset` per cell type underneath). The
examples of a gene are consecutive and listed in :attr:`CellTypesDataset.groups`, so that a
batch sampler can keep them together (the cross-cell-type loss compares them).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

try:  # the Dataset base class
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover
    _TorchDataset = object

from .windows import WindowDataset


class CellTypesDataset(_TorchDataset):
    """The examples of several cell types, grouped by gene (genes in the order they first
    appear in the cell types' datasets; a gene without a target in a cell type, dropped from
    that one, keeps its other cell types).

    Args:
        datasets: cell type -> its window dataset, all over the same gene table and window.

    Items are the window datasets' items plus ``cell_type`` (a string); their
    ``cell_type_index`` (the output of a per-cell-type head they read) is their window
    dataset's, which :func:`seq2exp_plugin.train.fit.make_dataset` sets from the model's cell
    types by name.
    """

    def __init__(self, datasets: Mapping[str, WindowDataset]) -> None:
        if len(datasets) < 2:
            raise ValueError(f"several cell types need at least two, got {list(datasets)}")
        self.datasets = dict(datasets)
        parts = list(self.datasets.values())
        if len({d.window for d in parts}) > 1 or len({d.signal_names for d in parts}) > 1:
            raise ValueError("the cell types' datasets must share the window and the signal names")
        where: dict[str, list[tuple[int, int]]] = {}
        for c, dataset in enumerate(parts):
            for i, gene in enumerate(dataset.gene_ids):
                where.setdefault(str(gene), []).append((c, i))
        self.index = [pair for pairs in where.values() for pair in pairs]
        #: The example indices of each gene (consecutive).
        self.groups: list[list[int]] = []
        start = 0
        for pairs in where.values():
            self.groups.append(list(range(start, start + len(pairs))))
            start += len(pairs)
        cells, local = np.array([c for c, _ in self.index]), np.array([i for _, i in self.index])
        names = list(self.datasets)

        def gather(attribute: str) -> np.ndarray:
            return np.stack([getattr(parts[c], attribute)[i] for c, i in self.index])

        #: Per example: its cell type, gene and where it lies; its features and target.
        self.cell_types = np.asarray([names[c] for c in cells], dtype=object)
        self.gene_ids, self.chroms, self.strands = gather("gene_ids"), gather("chroms"), gather("strands")
        self.tss, self.features, self.targets = gather("tss"), gather("features"), gather("targets")
        self._local = local
        self._cells = cells
        self.window = parts[0].window
        self.signal_names = parts[0].signal_names
        self.rc_minus_strand = parts[0].rc_minus_strand

    def __len__(self) -> int:
        return len(self.index)

    def _item(self, i: int, numpy: bool) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} (gene, cell type) examples")
        dataset = list(self.datasets.values())[self._cells[i]]
        local = int(self._local[i])
        item = dataset.get_numpy(local) if numpy else dataset[local]
        return {**item, "cell_type": str(self.cell_types[i])}

    def get_numpy(self, i: int) -> dict:
        """Example ``i`` with numpy arrays."""
        return self._item(int(i), numpy=True)

    def __getitem__(self, i: int) -> dict:
        return self._item(int(i), numpy=False)
