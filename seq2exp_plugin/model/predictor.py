"""The predictor g_phi: expression from the masked DNA + signal embedding (paper section 4.1).

DNA and signals are embedded (``Linear(4, d) + Linear(n_signals, d)``), multiplied by the mask,
encoded by a bidirectional Mamba stack, mean-pooled over the central ``pool_width`` bp,
concatenated with the extra per-gene features and read out by an MLP
(``d + n_features -> head_hidden -> head_hidden -> 1``, ReLU; with ``celltype_head`` one
output per cell type, each example reading its own). With ``promoter_linear`` a fixed
linear map of the promoter's log mean signals and the gene features (the promoter ridge, fitted
before training by :func:`seq2exp_plugin.train.ridge.fit_promoter_linear`) is added to the head's
output, which starts at 0. With ``kept_pool`` the head also
reads the mask-weighted sum of the whole window's states, in units of the centre's width
(``sum_l m_l h_l / pool_width``), through a learned gate that starts at 0: the distal elements
the mask keeps reach the head directly, once training has opened the gate.

Packed mode (hard masks): the stack runs on the kept positions only, in genomic order; a batch
runs as one call, its rows padded at their ends and the padding kept out of every state, so a
gene's prediction does not depend on the rest of its batch. What the packing removes - how far
apart kept positions are - comes back through a sinusoidal encoding of each position's offset
from the window centre (wavelengths 4 bp to 1 Mb), projected and added to the embedding, or,
with a learned position table (the authors' hard run), through the table rows of the kept
positions. The packed embeddings are multiplied by their
(straight-through) mask values, which are 1 in value but carry the prediction loss's gradient
to the generator.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..nn.bimamba import BiMambaStack, rc_symmetrize, zero_linear_biases_
from .baselines import promoter_design
from .celltype_head import own_output
from .config import Seq2ExpConfig
from .embedding import PositionTable, signal_input
from .mask import central_slice
from .scaling import InputScaling


class RelativePosition(nn.Module):
    """Relative-position encoding: offsets from the window centre (bp) -> ``(..., d_model)``
    via fixed sinusoids and a Linear layer.

    Args:
        d_model: width of the output.
        n_frequencies: number of sinusoid frequencies (each gives a sine and a cosine).
        min_wavelength: shortest wavelength, in bp.
        max_wavelength: longest wavelength, in bp.
    """

    def __init__(self, d_model: int, n_frequencies: int = 16,
                 min_wavelength: float = 4.0, max_wavelength: float = 1e6) -> None:
        super().__init__()
        wavelengths = torch.logspace(math.log10(min_wavelength), math.log10(max_wavelength),
                                     n_frequencies)
        self.register_buffer("frequencies", 2 * math.pi / wavelengths, persistent=False)
        self.proj = nn.Linear(2 * n_frequencies, d_model)

    def forward(self, offsets: Tensor) -> Tensor:
        """Args: offsets from the window centre in bp, any shape ``(...)``, e.g. ``(batch, L)``.
        Returns: ``(..., d_model)``."""
        angles = offsets.float().unsqueeze(-1) * self.frequencies
        return self.proj(torch.cat([angles.sin(), angles.cos()], dim=-1))


class MaskProduct(nn.Module):
    """``hidden * mask`` as a module of one input, the mask being its last channel:
    ``(..., D + 1) -> (..., D)``.

    Attribution methods attach their rules to modules, and tangermeme's DeepLIFT/SHAP attaches a
    rule of its own to one-input modules: :func:`seq2exp_plugin.adapters.grelu.deepshap_ops`
    gives this one integrated gradients, exact for a product. The model itself imports no
    attribution library."""

    def forward(self, hidden_and_mask: Tensor) -> Tensor:
        """Args: hidden_and_mask ``(..., D + 1)``, e.g. ``(batch, L, d_model + 1)``, the mask last.
        Returns: ``(..., D)``."""
        return hidden_and_mask[..., :-1] * hidden_and_mask[..., -1:]


class ExpressionHead(nn.Sequential):
    """MLP ``d_model + n_features -> hidden -> hidden -> n_outputs`` with ReLU: ``(batch, d_in)
    -> (batch, n_outputs)``; one output (one task, as gReLU heads) unless it is a per-cell-type
    head (:func:`~seq2exp_plugin.model.celltype_head.own_output` then picks each example's).

    Args:
        d_in: input width (pooled states plus the extra gene features).
        hidden: width of the two hidden layers.
        n_outputs: outputs of the last layer (one per cell type of a per-cell-type head).
    """

    n_tasks = 1

    def __init__(self, d_in: int, hidden: int, n_outputs: int = 1) -> None:
        super().__init__(
            nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, n_outputs)
        )


class Seq2ExpPredictor(nn.Module):
    """The predictor g_phi: masked DNA + signals + gene features -> expression ``(batch,)``.

    Usable alone with any mask: a generator's, a MACS3 peak mask, the top-k% of a trained
    generator (Seq2Exp-retrain), or none (``mask=None``: the "sequence + signals" baseline).

    Args:
        config: the model configuration (``predictor`` stack, ``mask``, ``pool_width``,
            ``head_hidden``, ``scaling``, ...); None: the defaults.
        use_signals: embed the signals; False reads the DNA alone (the sequence-only,
            Caduceus baseline).
    """

    #: On the CPU, packed sequences run together up to this many positions in all per call:
    #: beyond it the larger tensors cost more than their size (fresh pages from the allocator,
    #: caches) and one call becomes slower than several (``benchmarks/bench_speed.py
    #: --packed``). On a GPU the whole batch is one call.
    cpu_packed_positions: int | None = 32_768

    def __init__(self, config: Seq2ExpConfig | None = None, use_signals: bool = True) -> None:
        super().__init__()
        self.config = config or Seq2ExpConfig()
        cfg = self.config
        d_model = cfg.predictor.d_model
        self.seq_embedding = nn.Linear(4, d_model)
        self.signal_embedding = nn.Linear(cfg.n_signals, d_model) if use_signals else None
        self.positions = PositionTable(cfg.position_table, d_model) if cfg.position_table else None
        self.backbone = BiMambaStack(cfg.predictor)
        # a packed sequence without absolute positions learns their distances from this
        self.position = RelativePosition(d_model) if cfg.mask.packed and not cfg.position_table else None
        use_token = cfg.mask.mask_token and not cfg.mask.packed  # packed: kept positions only, m = 1
        self.mask_token = nn.Parameter(torch.zeros(d_model)) if use_token else None
        n_pooled = 2 if cfg.kept_pool else 1
        self.head = ExpressionHead(n_pooled * d_model + cfg.n_features, cfg.head_hidden, cfg.n_outputs)
        # the promoter ridge beside the head: fitted before training (train.ridge), then fixed;
        # the head starts at 0 so the untrained network is that ridge
        self.promoter_linear = None
        if cfg.promoter_linear and use_signals:
            self.promoter_linear = nn.Linear(cfg.n_signals + cfg.n_features, 1)
            self.promoter_linear.requires_grad_(False)
            nn.init.zeros_(self.promoter_linear.weight)
            nn.init.zeros_(self.promoter_linear.bias)
        self.mask_product = MaskProduct()
        # a module of its own, so attribution hooks see each product once per forward pass
        self.kept_product = MaskProduct() if cfg.kept_pool else None
        # the kept sum enters through a gate that starts closed (as ReZero's residual branches):
        # the head first reads the centre, as the paper's does, and opens the distal path as
        # far as it pays. Open from the start, that path let a silent gene's active neighbours
        # make it look expressed in short runs (benchmarks/README.md, "Cross-validation on
        # synthetic genes")
        self.kept_gate = nn.Parameter(torch.zeros(())) if cfg.kept_pool else None
        self.scaling = InputScaling(cfg.scaling)
        if cfg.predictor.caduceus_init:
            zero_linear_biases_(self)
        if self.promoter_linear is not None:
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    def embed(self, seq: Tensor, signals: Tensor, mask: Tensor | None = None,
              positions: Tensor | None = None) -> Tensor:
        """Masked input embedding ``M * (E_seq(x) [+ P] + E_sig(s))`` (``+ (1 - M) * e_mask`` with
        a mask token).

        Args:
            seq: one-hot DNA ``(batch, 4, L)``.
            signals: scaled signal tracks ``(batch, n_signals, L)``.
            mask: mask values ``(batch, L)``; None: unmasked.
            positions: the window positions of the L columns ``(batch, L)`` (packed sequences;
                None: all of them), read from the position table if there is one.

        Returns:
            Embeddings, channels-last ``(batch, L, d_model)``.
        """
        hidden = self.seq_embedding(seq.transpose(1, 2))
        if self.positions is not None:
            hidden = hidden + self.positions(seq.shape[-1] if positions is None else positions)
        if self.signal_embedding is not None:
            signals = signal_input(signals, self.config.signal_transform)
            hidden = hidden + self.signal_embedding(signals.transpose(1, 2))
        if mask is not None:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            hidden = self.mask_product(torch.cat([hidden, m], dim=-1))
            if self.mask_token is not None:
                hidden = hidden + (1 - m) * self.mask_token
        return hidden

    def encode(self, seq: Tensor, signals: Tensor, mask: Tensor | None = None) -> Tensor:
        """:meth:`embed` then the Mamba stack.

        Args:
            seq: one-hot DNA ``(batch, 4, L)``.
            signals: scaled signal tracks ``(batch, n_signals, L)``.
            mask: mask values ``(batch, L)``; None: unmasked.

        Returns:
            Hidden states ``(batch, L, d_model)``.
        """
        return self.backbone(self.embed(seq, signals, mask))

    def forward(self, seq: Tensor, signals: Tensor, features: Tensor,
                mask: Tensor | None = None, cell_type: Tensor | None = None) -> Tensor:
        """Raw inputs in (the fitted scaling is applied here), expression on the target scale out.

        Args:
            seq: one-hot DNA ``(batch, 4, L)``.
            signals: raw signal tracks ``(batch, n_signals, L)``.
            features: raw extra gene features ``(batch, n_features)``.
            mask: mask values ``(batch, L)``; None: unmasked. In packed mode the stack reads
                only positions with mask > 0.5.
            cell_type: each example's output of a per-cell-type head ``(batch,)`` int64
                (``config.celltype_index``); None with the shared head.

        Returns:
            Predicted expression, log10(CAGE + 1) on the target scale, ``(batch,)``.
        """
        signals, features = self.scaling.signals(signals), self.scaling.features(features)
        if self.config.mask.packed and mask is not None:
            pooled = self._pool_packed(seq, signals, mask)
        else:
            if self.config.predictor.rc_equivariant:
                hidden = rc_symmetrize(self.encode, seq, signals, mask)
            else:
                hidden = self.encode(seq, signals, mask)
            pooled = hidden[:, central_slice(seq.shape[-1], self.config.pool_width)].mean(1)
            if self.config.kept_pool:
                pooled = torch.cat([pooled, self._kept_sum(hidden, mask)], dim=-1)
        outputs = self.head(torch.cat([pooled, features.to(pooled.dtype)], dim=-1))
        standardised = own_output(outputs, cell_type)
        if self.promoter_linear is not None:
            with torch.autocast(seq.device.type, enabled=False):  # the fitted ridge in fp32
                ridge = self.promoter_linear(self.promoter_design(signals, features)).squeeze(-1)
            standardised = standardised + ridge
        return self.scaling.output(standardised)

    def promoter_design(self, signals: Tensor, features: Tensor) -> Tensor:
        """The inputs of the promoter path (``promoter_linear``) from scaled signals and features:
        ``(batch, n_signals + n_features)``, as the promoter-ridge baseline reads them."""
        return promoter_design(signals.float(), features.float(), self.config.promoter_linear)

    def _kept_sum(self, hidden: Tensor, mask: Tensor | None) -> Tensor:
        """``gate * sum_l m_l h_l / pool_width`` over ``hidden (B, L, d)`` (no mask: the mean)."""
        if mask is None:
            kept = hidden.mean(-2)
        else:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            kept = self.kept_product(torch.cat([hidden, m], dim=-1)).sum(-2) / self.config.pool_width
        return self.config.kept_gate_rate * self.kept_gate * kept

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # version-1 checkpoints written before the gate existed read the kept sum as it was:
        # gate open. From version 2 on, a missing gate is a missing parameter (an error).
        if (self.config.version == 1 and self.kept_gate is not None
                and prefix + "kept_gate" not in state_dict):
            state_dict[prefix + "kept_gate"] = torch.full((), 1 / self.config.kept_gate_rate)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _pool_packed(self, seq: Tensor, signals: Tensor, mask: Tensor) -> Tensor:
        """Run the stack on each sequence's kept positions (mask > 0.5) and pool its centre."""
        centre = central_slice(seq.shape[-1], self.config.pool_width)
        kept = mask.detach() > 0.5
        empty = (~kept[:, centre].any(1)).nonzero()
        if len(empty):
            raise ValueError(f"packed predictor: the mask of sequence {int(empty[0])} keeps no "
                             f"position of the central {self.config.pool_width} bp it pools; keep "
                             "the promoter (seq2exp_plugin.model.mask.constrain)")
        budget = self.cpu_packed_positions if seq.device.type == "cpu" else None
        return torch.cat([self._pool_packed_rows(seq[rows], signals[rows], mask[rows], kept[rows])
                          for rows in row_groups(kept.sum(1).tolist(), budget)])

    def _pool_packed_rows(self, seq: Tensor, signals: Tensor, mask: Tensor, kept: Tensor) -> Tensor:
        """:meth:`_pool_packed` of some rows in one call: row b holds b's kept positions in
        genomic order, padded at its end to the longest row, and the stack is told which columns
        are padding, so each gene's prediction is that of its sequence alone (the authors'
        zero-padded batch made it depend on the batch)."""
        length = seq.shape[-1]
        centre = central_slice(length, self.config.pool_width)
        counts = kept.sum(1)
        width = int(counts.max())
        # column j of row b: b's j-th kept position; the padding repeats b's first one
        index = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)[:, :width]
        valid = torch.arange(width, device=seq.device) < counts.unsqueeze(1)
        index = torch.where(valid, index, index[:, :1])
        mask = mask.gather(1, index)
        hidden = self.embed(seq.gather(2, index.unsqueeze(1).expand(-1, seq.shape[1], -1)),
                            signals.gather(2, index.unsqueeze(1).expand(-1, signals.shape[1], -1)),
                            mask, positions=index)
        if self.position is not None:
            hidden = hidden + self.position(index - (length - 1) / 2)
        hidden = self.backbone(hidden, valid)
        in_centre = (valid & (index >= centre.start) & (index < centre.stop)).unsqueeze(-1)
        pooled = (hidden * in_centre).sum(1) / in_centre.sum(1)
        if self.config.kept_pool:
            pooled = torch.cat([pooled, self._kept_sum(hidden, mask * valid)], dim=-1)
        return pooled


def row_groups(lengths: list[int], budget: int | None) -> list[slice]:
    """Split rows into consecutive groups whose lengths sum to at most ``budget``.

    Args:
        lengths: each row's length (kept positions).
        budget: most positions per group (a longer row forms a group alone); None: one group.

    Returns:
        Slices over the rows, in order.
    """
    if budget is None:
        return [slice(0, len(lengths))]
    groups, start, total = [], 0, 0
    for row, n in enumerate(lengths):
        if row > start and total + n > budget:
            groups.append(slice(start, row))
            start, total = row, 0
        total += n
    groups.append(slice(start, len(lengths)))
    return groups
