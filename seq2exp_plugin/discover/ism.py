"""In-silico mutagenesis (ISM) and attributions of a trained model, through gReLU's own tools.

gReLU's tools take 4-channel DNA. :func:`load_locus` reads one gene's window (DNA, signals,
features, blacklist) and :func:`bind` turns a trained model + that locus into a gReLU
``LightningModel`` on DNA alone (:func:`seq2exp_plugin.adapters.grelu.bind_locus`). On it:

- :func:`ism_effects`: gReLU's ``ISMDataset`` (``drop_ref=True``: 3 mutated sequences per
  position, any set of positions) predicted by gReLU's ``predict_on_dataset``, batched.
  ``grelu.interpret.score.ISM_predict`` runs on the same bound model too (contiguous ranges,
  4 predictions per position including the reference base).
- :func:`attributions`: ``grelu.interpret.score.get_attributions`` with the methods
  ``saliency``, ``inputxgradient``, ``integratedgradients`` (Captum) and ``deepshap``
  (tangermeme; the rules Seq2Exp needs are added, see :func:`seq2exp_plugin.adapters.grelu.deepshap_ops`).
- :func:`select_elements`: the restricted ISM's positions - the top elements of the gene's mask
  (runs of high mask score, :func:`seq2exp_plugin.discover.regions.call_elements`) within a bp
  budget, plus the central promoter if asked.
- :func:`ism_gene`: the restricted ISM of one gene; ``seq2exp ism`` writes it for some genes
  (:mod:`seq2exp_plugin.discover.ism_run`).

**What the generator sees under mutation.** By default (``mask_mode="recompute"``) each mutated
sequence goes through the whole model: the generator reads the mutated DNA, so a mutation acts
both through the predictor and by changing the mask (which elements are selected) - the model's
actual prediction for the mutated sequence, and the same rule ``seq2exp variants`` uses.
``mask_mode="fixed"`` binds the reference sequence's mask and runs the predictor alone: the
direct effect with the selection held fixed (the difference of the two is the part that acts
through the mask).

**Coordinates.** Arrays are in window order (reversed genomic order for "-" genes when the
dataset reverse-complements them). Output tables give genomic positions **1-based** (``pos``, as
in VCF, so a row's ``chrom, pos, ref, alt`` is directly a variant for ``seq2exp variants``) and
bases on the genome's + strand; BED and bigWig files are 0-based half-open as those formats are.
Positions whose reference base is N are not mutated.

**gReLU 1.1.0 quirks routed around here**: ``predict_on_dataset`` sets torch's float32 matmul
precision to "medium" process-wide (restored after each call) and builds a Lightning trainer
whose default logger writes ``lightning_logs/`` into the working directory (run from a
temporary directory).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import InputError, MissingInputError

__all__ = [
    "BASES",
    "Locus",
    "SelectedElement",
    "ISMResult",
    "load_locus",
    "reference_mask",
    "bind",
    "ism_effects",
    "attributions",
    "select_elements",
    "ism_gene",
]

BASES = "ACGT"
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
METHODS = ("saliency", "inputxgradient", "integratedgradients", "deepshap")


# ----------------------------------------------------------------------------------- loci
@dataclass
class Locus:
    """One gene's window as the model reads it (window order), and where it lies.

    ``seq (4, L)``, ``signals (d, L)`` (the tracks ``signal_names``), ``features (n,)``,
    ``blacklist (L,)`` bool, ``mask`` the dataset's peak mask (peak-mask models) or ``None``; ``reverse``: index ``i`` is genomic
    position ``end - 1 - i`` (else ``start + i``)."""

    gene_id: str
    chrom: str
    start: int
    end: int
    strand: str
    tss: int
    reverse: bool
    seq: Any
    signals: Any
    features: Any
    blacklist: Any
    signal_names: tuple[str, ...]
    mask: Any = None
    #: The output of a per-cell-type head the locus reads (the dataset item's).
    cell_type_index: int = 0

    @classmethod
    def from_item(cls, item: dict, rc_minus_strand: bool, signal_names: Sequence[str]) -> "Locus":
        import torch

        as_tensor = lambda key: None if item.get(key) is None else torch.as_tensor(np.asarray(item[key]))  # noqa: E731
        strand = str(item["strand"])
        return cls(str(item["gene_id"]), str(item["chrom"]), int(item["start"]), int(item["end"]), strand,
                   int(item["tss"]), bool(rc_minus_strand) and strand == "-", as_tensor("seq").float(),
                   as_tensor("signals").float(), as_tensor("features").float(),
                   as_tensor("blacklist").bool(), tuple(signal_names), as_tensor("mask"),
                   int(item.get("cell_type_index", 0)))

    @property
    def length(self) -> int:
        return self.end - self.start

    def genomic(self, index) -> np.ndarray:
        """0-based genomic positions of window indices."""
        index = np.asarray(index, dtype=np.int64)
        return self.end - 1 - index if self.reverse else self.start + index

    def window_index(self, position: int) -> int:
        """Window index of a 0-based genomic position inside the window."""
        if not self.start <= position < self.end:
            raise InputError(f"gene {self.gene_id!r}: position {position} is outside its window "
                             f"{self.chrom}:{self.start}-{self.end}")
        return self.end - 1 - position if self.reverse else position - self.start

    def plus_strand(self, bases: str) -> str:
        """Bases read in window order -> the genome's + strand (complemented if reversed)."""
        return bases.translate(_COMPLEMENT) if self.reverse else bases


def load_locus(dataset, gene_id: str) -> Locus:
    """The locus of ``gene_id`` in a window dataset (``KeyError`` naming the gene if absent)."""
    ids = [str(g) for g in dataset.gene_ids]
    if gene_id not in ids:
        raise MissingInputError(f"gene {gene_id!r} is not in the gene table ({len(ids)} genes, e.g. {ids[:3]})")
    return Locus.from_item(dataset[ids.index(gene_id)],
                           getattr(dataset, "rc_minus_strand", dataset.extractor.rc_minus_strand),
                           dataset.signal_names)


def _net(model):
    """The library network of a LightningModel / gReLU class / network."""
    face = getattr(model, "model", model)
    return getattr(face, "net", face)


def _reference_generator_output(net, locus: Locus):
    """The generator's output (eval mode, no gradient) on the locus's reference window."""
    import torch

    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return net.generator(locus.seq[None], locus.signals[None], locus.blacklist[None])
    finally:
        net.train(was_training)


def reference_mask(model, locus: Locus) -> np.ndarray | None:
    """The per-bp mask score of the reference window (the generator's posterior mean, promoter
    kept, blacklist removed); a peak-mask model's mask; ``None`` for models without a mask."""
    from ..model.seq2exp import Seq2ExpModel

    net = _net(model)
    if isinstance(net, Seq2ExpModel):
        return _reference_generator_output(net, locus).score[0].float().numpy()
    return None if locus.mask is None else np.asarray(locus.mask, dtype=np.float32)


def bind(model, locus: Locus, mask_mode: str = "recompute"):
    """A gReLU ``LightningModel`` on the locus's DNA alone (see the module docstring for
    ``mask_mode``: "recompute" - the generator reads each sequence - or "fixed" - the reference
    mask is held). Its predictions run in this process whatever ``num_workers`` gReLU's tools
    pass (ISM_predict's default is 1): the sequences are in memory, and a loader worker forked
    from a process already running torch's threads can hang."""
    from ..adapters.grelu import bind_locus
    from ..model.seq2exp import Seq2ExpModel

    if mask_mode not in ("recompute", "fixed"):
        raise InputError(f"mask_mode must be 'recompute' or 'fixed', got {mask_mode!r}")
    mask = locus.mask
    net = _net(model)
    if isinstance(net, Seq2ExpModel):
        # recompute: no mask bound, the generator runs on every sequence; fixed: the mask the
        # predictor reads for the reference window
        mask = _reference_generator_output(net, locus).mask[0].float() if mask_mode == "fixed" else None
    bound = bind_locus(model, locus.signals, locus.features, locus.signal_names,
                       blacklist=locus.blacklist, mask=mask, cell_type_index=locus.cell_type_index)
    predict = bound.predict_on_dataset

    def predict_on_dataset(dataset, **kwargs):
        # gReLU's tools (ISM_predict, ...) predict through this: in process (see above), and
        # Lightning's default lightning_logs/ and start-up chatter kept out of the caller's way
        kwargs["num_workers"] = 0
        with _grelu_prediction_context():
            return predict(dataset, **kwargs)

    bound.predict_on_dataset = predict_on_dataset
    return bound


# ------------------------------------------------------------------------------- gReLU runs
@contextlib.contextmanager
def _grelu_prediction_context() -> Iterator[None]:
    """Around gReLU's ``predict_on_dataset``: keep torch's matmul precision, keep Lightning's
    start-up chatter and its default ``lightning_logs/`` out of the user's way."""
    import torch

    precision = torch.get_float32_matmul_precision()
    names = ("lightning.pytorch", "pytorch_lightning", "lightning.fabric", "lightning_fabric")
    levels = {n: logging.getLogger(n).level for n in names}
    cwd = os.getcwd()
    scratch = tempfile.mkdtemp(prefix="seq2exp-grelu-")
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.WARNING)
        os.chdir(scratch)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tensorboardX.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            yield
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
        torch.set_float32_matmul_precision(precision)
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def _one_hot_to_string(seq) -> str:
    from grelu.sequence.format import convert_input_type

    return convert_input_type(seq, "strings")


def ism_effects(bound, seq, positions: Sequence[int], batch_size: int = 64,
                devices: str | int | list = "cpu") -> tuple[float, np.ndarray, dict]:
    """ISM at ``positions`` (window indices) with gReLU's ``ISMDataset`` + ``predict_on_dataset``.

    Returns ``(reference prediction, deltas (P, 4), cost)``: ``deltas[p, b]`` = prediction with
    base ``b`` (A, C, G, T) at ``positions[p]`` minus the reference prediction (0 for the
    reference base); ``cost`` = ``{"bases", "model_calls", "seconds"}``. Positions whose base is N
    are rejected (``ValueError``).
    """
    import torch
    from grelu.data.dataset import ISMDataset

    seq = torch.as_tensor(seq).float()
    positions = [int(p) for p in positions]
    if not positions:
        raise InputError("ism_effects: no positions to mutate")
    length = seq.shape[-1]
    bad = [p for p in positions if not 0 <= p < length]
    if bad:
        raise InputError(f"ism_effects: position {bad[0]} outside the window of {length} bp")
    ref_idx = seq.argmax(0).numpy()
    is_n = (seq.sum(0) == 0).numpy()
    if is_n[positions].any():
        p = positions[int(np.flatnonzero(is_n[positions])[0])]
        raise InputError(f"ism_effects: the reference base at window index {p} is N")
    t0 = time.perf_counter()
    with torch.no_grad():
        device = next(bound.parameters(), seq).device
        ref = float(bound(seq[None].to(device)).reshape(-1)[0])
    dataset = ISMDataset(seqs=_one_hot_to_string(seq), positions=positions, drop_ref=True)
    with _grelu_prediction_context():
        preds = bound.predict_on_dataset(dataset, devices=devices, num_workers=0, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    preds = np.asarray(preds, dtype=np.float64).reshape(len(positions), 3)  # (1, P, 3, 1, 1)
    deltas = np.zeros((len(positions), 4))
    for k, p in enumerate(positions):
        alts = [b for b in range(4) if b != ref_idx[p]]  # ISMDataset's order with drop_ref
        deltas[k, alts] = preds[k] - ref
    cost = {"bases": len(positions), "model_calls": 3 * len(positions) + 1, "seconds": seconds}
    return ref, deltas, cost


@contextlib.contextmanager
def _no_layer_checkpointing(net) -> Iterator[None]:
    """Attribution hooks see each layer once: switch activation checkpointing off meanwhile."""
    from ..nn.bimamba import BiMambaStack

    stacks = [m for m in net.modules() if isinstance(m, BiMambaStack)]
    saved = [s.config.checkpoint_layers for s in stacks]
    try:
        for s in stacks:
            s.config.checkpoint_layers = False
        yield
    finally:
        for s, v in zip(stacks, saved):
            s.config.checkpoint_layers = v


def attributions(bound, seqs, method: str = "deepshap", n_shuffles: int = 20, seed: int | None = 0,
                 ig_nodes: int = 8, **kwargs) -> np.ndarray:
    """Per-base attributions ``(N, 4, L)`` of one-hot ``seqs (N, 4, L)`` (or ``(4, L)``) from
    ``grelu.interpret.score.get_attributions`` on a bound model.

    ``method``: saliency, inputxgradient, integratedgradients (Captum: one value per sequence,
    which the bound model gives) or deepshap (tangermeme, with :func:`deepshap_ops` rules using
    ``ig_nodes`` quadrature nodes). DeepSHAP pairs each sequence with its shuffled references
    along the batch axis, which RC-equivariant stacks (they double the batch) and the packed
    predictor (it runs sequence by sequence) do not keep: refused for those.
    """
    import torch
    from grelu.interpret.score import get_attributions

    from ..adapters.grelu import deepshap_ops

    if method not in METHODS:
        raise InputError(f"attribution method must be one of {METHODS}, got {method!r}")
    seqs = torch.as_tensor(seqs).float()
    if seqs.ndim == 2:
        seqs = seqs[None]
    net = _net(bound.model.model)
    if method == "deepshap":
        cfg = getattr(net, "config", None)
        if cfg is not None and (cfg.generator.rc_equivariant or cfg.predictor.rc_equivariant
                                or cfg.mask.packed):
            raise InputError("deepshap: not available for RC-equivariant or packed models (they do "
                             "not keep the sequence/reference pairing along the batch); use "
                             "integratedgradients")
        kwargs.setdefault("additional_nonlinear_ops", deepshap_ops(ig_nodes))
        kwargs.update(n_shuffles=n_shuffles, seed=seed)
    with _no_layer_checkpointing(net):
        return np.asarray(get_attributions(bound, seqs, method=method, **kwargs))


# ------------------------------------------------------------------------ element selection
@dataclass
class SelectedElement:
    """A window interval ``[start, end)`` chosen for ISM; ``kind`` "element" or "promoter";
    ``mean_score`` the mask's mean over the whole called element; ``clipped``: cut to the budget."""

    start: int
    end: int
    mean_score: float
    kind: str = "element"
    rank: int = 0
    clipped: bool = False
    positions: list[int] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.end - self.start


def select_elements(score: np.ndarray, top_elements: int = 5, bp_budget: int = 500,
                    threshold: float | None = 0.5, top_fraction: float | None = None,
                    min_gap: int = 20, min_length: int = 10, exclude: slice | None = None,
                    promoter: slice | None = None, scorable: np.ndarray | None = None,
                    ) -> list[SelectedElement]:
    """The positions of a restricted ISM, as elements in window coordinates.

    Elements are called on ``score`` (:func:`~seq2exp_plugin.discover.regions.call_elements`:
    runs of ``score >= threshold`` - or of the window's top ``top_fraction`` - merged across gaps
    of ``min_gap`` bp, at least ``min_length`` bp) with ``exclude`` (the always-kept promoter:
    it was not selected) zeroed first, ranked by mean score (ties: genomic order), and taken in
    that order, at most ``top_elements`` of them, until ``bp_budget`` bp are used; an element
    longer than what is left of the budget is cut to it, centred on its highest-scoring base.
    ``promoter`` (a slice) is added on top of the budget as kind "promoter". ``scorable``
    (bool per position, e.g. not N) decides which positions of each element are mutated.
    """
    from .regions import call_elements

    original = np.asarray(score, dtype=np.float64)
    score = original.copy()
    length = score.shape[-1]
    if top_elements < 0 or bp_budget < 0:
        raise InputError("top_elements and bp_budget must be >= 0")
    if exclude is not None:
        score[exclude] = 0.0
    scorable = np.ones(length, dtype=bool) if scorable is None else np.asarray(scorable, dtype=bool)
    called = call_elements(score, threshold=threshold, min_gap=min_gap, min_length=min_length,
                           top_fraction=top_fraction) if top_elements and bp_budget else []
    ranked = sorted(called, key=lambda e: (-e[2], e[0]))
    chosen: list[SelectedElement] = []
    left = int(bp_budget)
    for el in ranked:
        if len(chosen) >= top_elements or left <= 0:
            break
        s, e, mean = int(el[0]), int(el[1]), float(el[2])
        clipped = e - s > left
        if clipped:
            peak = s + int(np.argmax(score[s:e]))
            s = min(max(s, peak - left // 2), e - left)
            e = s + left
        left -= e - s
        chosen.append(SelectedElement(s, e, mean, "element", len(chosen) + 1, clipped))
    if promoter is not None:
        s, e, _ = promoter.indices(length)
        chosen.append(SelectedElement(s, e, float(np.mean(original[s:e])) if e > s else 0.0,
                                      "promoter", 0))
    for el in chosen:
        el.positions = [p for p in range(el.start, el.end) if scorable[p]]
    return chosen


# ------------------------------------------------------------------------------ seq2exp ism
@dataclass
class ISMResult:
    """One gene's restricted ISM."""

    locus: Locus
    elements: list[SelectedElement]
    reference: float
    positions: np.ndarray  # window indices, (P,)
    deltas: np.ndarray  # (P, 4), window-order bases (A, C, G, T as the model read them)
    cost: dict

    def table(self):
        """One row per (position, alternative base): genomic ``pos`` 1-based, + strand bases."""
        import pandas as pd

        loc = self.locus
        seq = np.asarray(loc.seq)
        ref_idx = seq.argmax(0)
        element_of = {}
        for el in self.elements:
            name = f"{loc.gene_id}:{'promoter' if el.kind == 'promoter' else el.rank}"
            for p in el.positions:
                element_of.setdefault(p, name)
        rows = []
        for k, p in enumerate(self.positions):
            ref_b = BASES[ref_idx[p]]
            for b in range(4):
                if b == ref_idx[p]:
                    continue
                rows.append((loc.gene_id, element_of.get(int(p), ""), loc.chrom, int(loc.genomic(p)) + 1,
                             loc.plus_strand(ref_b), loc.plus_strand(BASES[b]), int(p),
                             self.reference + self.deltas[k, b], self.deltas[k, b]))
        df = pd.DataFrame(rows, columns=["gene_id", "element", "chrom", "pos", "ref", "alt", "window_index",
                                         "prediction", "delta"])
        return df.sort_values(["chrom", "pos", "alt"], kind="stable").reset_index(drop=True)

    def per_position(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(genomic 0-based positions, max |delta|, mean delta over the 3 alternatives)``,
        sorted by position."""
        seq = np.asarray(self.locus.seq)
        ref_idx = seq.argmax(0)[self.positions]
        alt = np.ones_like(self.deltas, dtype=bool)
        alt[np.arange(len(self.positions)), ref_idx] = False
        alt_deltas = self.deltas[alt].reshape(-1, 3)
        gpos = self.locus.genomic(self.positions)
        order = np.argsort(gpos)
        return gpos[order], np.abs(alt_deltas).max(1)[order], alt_deltas.mean(1)[order]


def ism_gene(model, locus: Locus, score: np.ndarray, mask_mode: str = "recompute", batch_size: int = 64,
             devices="cpu", **select) -> ISMResult:
    """Restricted ISM of one gene (elements from ``score``; ``select``: :func:`select_elements`
    options)."""
    scorable = np.asarray(locus.seq).sum(0) > 0
    elements = select_elements(score, scorable=scorable, **select)
    positions = sorted({p for el in elements for p in el.positions})
    if not positions:
        raise InputError(f"gene {locus.gene_id!r}: no positions to mutate (no element called at these "
                         f"settings; max mask score outside the promoter "
                         f"{_max_outside(score, select.get('exclude')):.3f}); lower --threshold or use "
                         f"--top-fraction / --promoter-bp")
    bound = bind(model, locus, mask_mode)
    ref, deltas, cost = ism_effects(bound, locus.seq, positions, batch_size=batch_size, devices=devices)
    return ISMResult(locus, elements, ref, np.asarray(positions), deltas, cost)


def _max_outside(score, exclude) -> float:
    s = np.asarray(score, dtype=np.float64).copy()
    if exclude is not None:
        s[exclude] = -np.inf
    return float(np.max(s)) if s.size and np.isfinite(np.max(s)) else float("nan")
