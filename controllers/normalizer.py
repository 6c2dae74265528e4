"""Running observation normalizer (ARS V2, Mania et al. 2018), frozen for export.

Statistics are merged from per-rollout sums with Chan et al.'s parallel update,
so the result does not depend on how rollouts were split across workers.
"""

from __future__ import annotations

import dataclasses

import numpy as np

CLIP = 10.0
"""Normalized observations are clipped to [-CLIP, CLIP]; the exported graph does the same."""
MIN_STD = 1e-6


@dataclasses.dataclass(frozen=True)
class NormalizerSnapshot:
    """Frozen statistics: ``normalize(x) = clip((x - mean) / std, -CLIP, CLIP)``."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def identity(cls, dim: int) -> NormalizerSnapshot:
        return cls(np.zeros(dim), np.ones(dim))

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        return np.clip((obs - self.mean) / self.std, -CLIP, CLIP)


@dataclasses.dataclass(frozen=True)
class RunningNormalizer:
    """Count, mean and summed squared deviations (M2) of every observation seen so far."""

    count: float
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> RunningNormalizer:
        return cls(0.0, np.zeros(dim), np.zeros(dim))

    def update(self, count: int, total: np.ndarray, total_sq: np.ndarray) -> RunningNormalizer:
        """Merge a batch given by its count, sum and sum of squares."""
        if count == 0:
            return self
        b_mean = total / count
        b_m2 = np.maximum(total_sq - count * b_mean**2, 0.0)
        n = self.count + count
        delta = b_mean - self.mean
        mean = self.mean + delta * (count / n)
        m2 = self.m2 + b_m2 + delta**2 * (self.count * count / n)
        return RunningNormalizer(n, mean, m2)

    def snapshot(self) -> NormalizerSnapshot:
        """Frozen view; dimensions with (near) zero variance get std 1, as in ARS."""
        if self.count < 2:
            return NormalizerSnapshot(self.mean.copy(), np.ones_like(self.mean))
        std = np.sqrt(self.m2 / self.count)
        # Relative floor: sum-of-squares merging leaves ~1e-8 relative noise on constant dimensions.
        return NormalizerSnapshot(self.mean.copy(), np.where(std < MIN_STD * (1 + np.abs(self.mean)), 1.0, std))
