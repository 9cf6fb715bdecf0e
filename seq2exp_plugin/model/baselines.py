"""Baselines of the paper and of the hierarchical chromatin-to-expression thesis.

Mamba-based baselines are the predictor under another mask (see
:class:`~seq2exp_plugin.model.predictor.Seq2ExpPredictor`):

- sequence only (Caduceus): ``Seq2ExpPredictor(config, use_signals=False)``, no mask;
- sequence + signals without a mask ("Caduceus w/ signals"): ``Seq2ExpPredictor(config)``, no mask;
- MACS3 peak mask / Seq2Exp-retrain: ``Seq2ExpPredictor(config)`` given a fixed mask.

Here are the two that read binned signals only (no DNA), after the thesis
(``shared/seeds/hierarchical_expression_thesis.txt``, section 2.1):

- :class:`HierarchicalCNN`: signals averaged in 128-bp bins -> a stem convolution, residual
  blocks (BatchNorm, GELU, Conv) each followed by max pooling (8 convolutions in all) -> Linear;
- :class:`ExpectoRidge`: binned signals integrated by ExPecto's exponential spatial basis
  functions (upstream and downstream separately) -> ridge regression (scikit-learn); or the
  promoter signals alone.

Both apply the model configuration's fitted scaling (:mod:`seq2exp_plugin.model.scaling`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .celltype_head import own_output
from .config import ScalingConfig
from .mask import central_slice
from .scaling import InputScaling


def bin_signals(signals: Tensor, bin_size: int) -> Tensor:
    """Mean of signals over consecutive ``bin_size``-bp bins (a trailing partial bin is dropped).

    Args:
        signals: signal tracks ``(batch, n_signals, L)``.
        bin_size: bin width, in bp.

    Returns:
        Binned signals ``(batch, n_signals, L // bin_size)``.
    """
    if signals.shape[-1] < bin_size:
        raise ValueError(f"window of {signals.shape[-1]} bp is shorter than one {bin_size}-bp bin")
    return F.avg_pool1d(signals, bin_size)


class ResidualConvBlock(nn.Module):
    """Residual convolution block ``x + Dropout(Conv(GELU(BatchNorm(x))))``, length kept.

    Args:
        channels: number of input and output channels.
        kernel_size: convolution width, in bins.
        dropout: dropout probability.
    """

    def __init__(self, channels: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels)
        self.act = nn.GELU()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding="same")
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(batch, channels, n_bins)``. Returns: ``(batch, channels, n_bins)``."""
        return x + self.dropout(self.conv(self.act(self.norm(x))))


class HierarchicalCNN(nn.Module):
    """Chromatin-to-expression CNN on 128-bp binned signals: ``(signals, features) -> (batch,)``.

    Args:
        n_signals: number of signal tracks.
        window: window length, in bp.
        n_features: number of extra gene features.
        bin_size: bin width, in bp.
        channels: convolution channels.
        n_blocks: residual blocks, each followed by max pooling (fewer if the window is short,
            so that at least one bin remains).
        kernel_size: convolution width, in bins.
        dropout: dropout probability in the residual blocks.
        scaling: the fitted input/output scaling; None: the identity.
        n_outputs: outputs of the last layer: one per cell type of a per-cell-type head, each
            example reading its own (:func:`~seq2exp_plugin.model.celltype_head.own_output`).
    """

    n_tasks = 1

    def __init__(self, n_signals: int, window: int, n_features: int = 9, bin_size: int = 128,
                 channels: int = 64, n_blocks: int = 7, kernel_size: int = 5,
                 dropout: float = 0.1, scaling: ScalingConfig | None = None,
                 n_outputs: int = 1) -> None:
        super().__init__()
        self.bin_size = bin_size
        self.scaling = InputScaling(scaling)
        n_bins = window // bin_size
        n_blocks = min(n_blocks, max(0, int(np.log2(max(n_bins, 1)))))  # keep >= 1 bin
        self.stem = nn.Conv1d(n_signals, channels, kernel_size, padding="same")
        self.blocks = nn.Sequential(*[
            nn.Sequential(ResidualConvBlock(channels, kernel_size, dropout), nn.MaxPool1d(2))
            for _ in range(n_blocks)
        ])
        self.linear = nn.Linear(channels * (n_bins >> n_blocks) + n_features, n_outputs)

    def forward(self, signals: Tensor, features: Tensor, cell_type: Tensor | None = None) -> Tensor:
        """Predict expression from raw signals (the fitted scaling is applied here).

        Args:
            signals: raw signal tracks ``(batch, n_signals, L)``.
            features: raw extra gene features ``(batch, n_features)``.
            cell_type: each example's output of a per-cell-type head ``(batch,)`` int64; None
                with one output.

        Returns:
            Predicted expression on the target scale, ``(batch,)``.
        """
        signals, features = self.scaling.signals(signals), self.scaling.features(features)
        x = torch.log1p(bin_signals(signals.clamp_min(0), self.bin_size))
        x = self.blocks(self.stem(x)).flatten(1)
        outputs = self.linear(torch.cat([x, features.to(x.dtype)], dim=1))
        return self.scaling.output(own_output(outputs, cell_type))


#: ExPecto's decay rates of the exponential spatial bases (per bin).
EXPECTO_DECAYS = (0.01, 0.02, 0.05, 0.1, 0.2)


def spatial_basis_features(signals: Tensor, bin_size: int = 128,
                           decays: tuple[float, ...] = EXPECTO_DECAYS) -> Tensor:
    """ExPecto-style features: for each signal, ``sum_bins log1p(s_bin) * exp(-decay * |bins
    from the TSS|)``, upstream and downstream of the window centre separately.

    Args:
        signals: signal tracks ``(batch, n_signals, L)``.
        bin_size: bin width, in bp.
        decays: decay rates of the exponential bases, per bin.

    Returns:
        Features ``(batch, n_signals * 2 * len(decays))``, float32.
    """
    binned = torch.log1p(bin_signals(signals.clamp_min(0), bin_size)).double()
    n_bins = binned.shape[-1]
    distance = torch.arange(n_bins, dtype=torch.float64) - (n_bins - 1) / 2
    rates = torch.tensor(decays, dtype=torch.float64)[:, None]
    weights = torch.exp(-rates * distance.abs())  # (n_decays, n_bins)
    upstream = (distance < 0).double()
    downstream = 1.0 - upstream
    bases = torch.cat([weights * upstream, weights * downstream])  # (2 * n_decays, n_bins)
    return torch.einsum("bdl,kl->bdk", binned, bases).flatten(1).float()


class ExpectoRidge(nn.Module):
    """Ridge regression on :func:`spatial_basis_features` plus the extra gene features
    (``promoter_width``: on the log1p mean of each signal over the central promoter instead -
    the simple promoter baseline, ``variant: promoter-ridge``).

    Fitted in closed form by scikit-learn (:meth:`fit`: standardisation + ``Ridge``, penalty
    chosen on validation genes); the fitted map is stored as one ``Linear`` layer with the
    standardisation folded in, so it saves, loads and predicts like the other models.

    Args:
        n_signals: number of signal tracks.
        n_features: number of extra gene features.
        bin_size: bin width, in bp.
        decays: decay rates of the exponential bases, per bin.
        promoter_width: width of the central promoter, in bp; None: the spatial bases.
        scaling: the fitted input/output scaling; None: the identity.
    """

    n_tasks = 1

    def __init__(self, n_signals: int, n_features: int = 9, bin_size: int = 128,
                 decays: tuple[float, ...] = EXPECTO_DECAYS, promoter_width: int | None = None,
                 scaling: ScalingConfig | None = None) -> None:
        super().__init__()
        self.bin_size, self.decays = bin_size, tuple(decays)
        self.promoter_width = promoter_width
        self.scaling = InputScaling(scaling)
        n_inputs = n_signals if promoter_width else n_signals * 2 * len(self.decays)
        self.linear = nn.Linear(n_inputs + n_features, 1)
        self.register_buffer("alpha", torch.tensor(float("nan")))

    def design(self, signals: Tensor, features: Tensor) -> Tensor:
        """The regression inputs (after the fitted input scaling): basis features of the
        signals (or, with ``promoter_width``, their log1p mean over the central promoter), then
        the gene features.

        Args:
            signals: raw signal tracks ``(batch, n_signals, L)``.
            features: raw extra gene features ``(batch, n_features)``.

        Returns:
            Design rows ``(batch, n_inputs + n_features)``.
        """
        signals, features = self.scaling.signals(signals), self.scaling.features(features)
        if self.promoter_width:
            return promoter_design(signals, features, self.promoter_width)
        basis = spatial_basis_features(signals, self.bin_size, self.decays)
        return torch.cat([basis, features.to(basis.dtype)], dim=1)

    def forward(self, signals: Tensor, features: Tensor) -> Tensor:
        """Predict expression with the fitted linear map.

        Args:
            signals: raw signal tracks ``(batch, n_signals, L)``.
            features: raw extra gene features ``(batch, n_features)``.

        Returns:
            Predicted expression on the target scale, ``(batch,)``.
        """
        return self.scaling.output(self.linear(self.design(signals, features)).squeeze(-1))

    def fit(self, x: np.ndarray, y: np.ndarray, valid: tuple[np.ndarray, np.ndarray] | None = None,
            alphas: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)) -> "ExpectoRidge":
        """Fit on design rows ``x`` (see :meth:`design`) and targets ``y``, in place.

        Args:
            x: design rows ``(n_genes, n_inputs + n_features)``.
            y: targets on the network's standardised scale, ``(n_genes,)``.
            valid: validation ``(x, y)`` that choose the penalty; None: penalty 1.
            alphas: candidate ridge penalties.

        Returns:
            This model, fitted (the chosen penalty in the ``alpha`` buffer).
        """
        self.alpha.fill_(fit_ridge_into(self.linear, x, y, valid, alphas))
        return self


def promoter_design(signals: Tensor, features: Tensor, width: int) -> Tensor:
    """The promoter ridge's inputs: ``log1p`` of each signal's mean over the central ``width`` bp
    (negative values read as 0), then the gene features.

    Args:
        signals: scaled signal tracks ``(batch, n_signals, L)``.
        features: scaled gene features ``(batch, n_features)``.
        width: width of the central promoter, in bp.

    Returns:
        Design rows ``(batch, n_signals + n_features)``.
    """
    centre = signals[..., central_slice(signals.shape[-1], width)]
    basis = torch.log1p(centre.clamp_min(0).mean(-1))
    return torch.cat([basis, features.to(basis.dtype)], dim=1)


def fit_ridge_into(linear: nn.Linear, x: np.ndarray, y: np.ndarray,
                   valid: tuple[np.ndarray, np.ndarray] | None = None,
                   alphas: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)) -> float:
    """Ridge regression of ``y`` on standardised ``x`` by scikit-learn, the penalty chosen on
    ``valid``, written into ``linear`` (one output) as a map of the raw rows: the
    standardisation folded in, so ``linear(x)`` predicts ``y``.

    Args:
        linear: the layer to fill, ``Linear(p, 1)``.
        x: design rows ``(n, p)``.
        y: targets ``(n,)``.
        valid: validation ``(x, y)`` that choose the penalty; None: penalty 1.
        alphas: candidate ridge penalties.

    Returns:
        The chosen penalty.
    """
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)

    def ridge(alpha: float) -> Ridge:
        return Ridge(alpha=alpha).fit(scaler.transform(x), y)

    if valid is None:
        alpha = 1.0
    else:
        errors = [np.mean((ridge(a).predict(scaler.transform(valid[0])) - valid[1]) ** 2)
                  for a in alphas]
        alpha = alphas[int(np.argmin(errors))]
    fitted = ridge(alpha)
    weight = fitted.coef_ / scaler.scale_
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32)[None])
        linear.bias.fill_(float(fitted.intercept_ - np.dot(weight, scaler.mean_)))
    return alpha
