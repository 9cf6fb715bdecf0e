"""The fitted scaling of a model's inputs and output, applied inside its forward.

Built from :class:`~seq2exp_plugin.model.config.ScalingConfig` (the numbers live in the
configuration, hence in every checkpoint's hyper-parameters): signals are divided by each
track's background, gene features go through an optional ``log1p`` and a standardisation, and
the network's standardised output is mapped back to the target scale (and, in eval mode,
clamped to the training range plus a margin). The default configuration is the identity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import ScalingConfig


class InputScaling(nn.Module):
    """The fitted scaling of signals and features, and its inverse for the output.

    ``signals (batch, n_signals, L)``, ``features (batch, n_features)`` in; scaled copies out;
    :meth:`output` undoes the target standardisation. Buffers are not persistent: the
    configuration is the source.

    Args:
        config: the fitted numbers; None: the identity.
    """

    def __init__(self, config: ScalingConfig | None = None) -> None:
        super().__init__()
        self.config = config or ScalingConfig()
        cfg = self.config

        def buffer(name: str, values, dtype=torch.float32) -> None:
            self.register_buffer(name, torch.tensor(values, dtype=dtype) if values else None,
                                 persistent=False)

        buffer("signal_background", cfg.signal_background)
        buffer("feature_log1p", cfg.feature_log1p, torch.bool)
        buffer("feature_mean", cfg.feature_mean)
        buffer("feature_std", cfg.feature_std)

    def signals(self, signals: Tensor) -> Tensor:
        """Fold over each track's background.

        Args:
            signals: raw signal tracks ``(batch, n_signals, L)``.

        Returns:
            Signals divided by each track's background, ``(batch, n_signals, L)``.
        """
        if self.signal_background is None:
            return signals
        return signals / self.signal_background.to(signals.dtype)[:, None]

    def features(self, features: Tensor) -> Tensor:
        """``log1p`` where configured (negative values clamped to 0 first), then standardised.

        Args:
            features: raw extra gene features ``(batch, n_features)``.

        Returns:
            Scaled features ``(batch, n_features)``.
        """
        if self.feature_log1p is not None and bool(self.feature_log1p.any()):
            features = torch.where(self.feature_log1p, torch.log1p(features.clamp_min(0)), features)
        if self.feature_mean is not None:
            features = (features - self.feature_mean.to(features.dtype)) / self.feature_std.to(features.dtype)
        return features

    def standardise(self, target: Tensor) -> Tensor:
        """Target scale -> the network's standardised scale (what a closed-form fit regresses on).

        Args:
            target: targets on the target scale (log10(expression + 1)), any shape.

        Returns:
            Standardised targets, same shape.
        """
        return (target - self.config.target_mean) / self.config.target_std

    def output(self, prediction: Tensor) -> Tensor:
        """The network's standardised output -> the target scale; clamped in eval mode.

        Args:
            prediction: standardised predictions, e.g. ``(batch,)``.

        Returns:
            Predictions on the target scale, same shape.
        """
        cfg = self.config
        if cfg.target_std != 1.0 or cfg.target_mean != 0.0:
            prediction = prediction * cfg.target_std + cfg.target_mean
        if not self.training and (cfg.target_low is not None or cfg.target_high is not None):
            prediction = prediction.clamp(cfg.target_low, cfg.target_high)
        return prediction
