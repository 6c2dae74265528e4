"""Exact-resume checkpoints of the ES state: everything else is derived from (seed, iteration)."""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np

from metactl.controllers import RunningNormalizer


@dataclasses.dataclass
class ESState:
    """The whole mutable state of an ES run after ``iteration`` completed iterations."""

    iteration: int
    params: np.ndarray
    normalizer: RunningNormalizer
    adam_m: np.ndarray
    adam_v: np.ndarray
    episodes: int = 0
    env_steps: int = 0
    elapsed_s: float = 0.0


def save_checkpoint(directory: str, state: ESState, keep: int = 3) -> str:
    """Write ``ckpt_<iteration>.npz`` atomically and keep only the newest ``keep``."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"ckpt_{state.iteration:06d}.npz")
    tmp = path + ".tmp.npz"
    np.savez(
        tmp,
        iteration=state.iteration,
        params=state.params,
        norm_count=state.normalizer.count,
        norm_mean=state.normalizer.mean,
        norm_m2=state.normalizer.m2,
        adam_m=state.adam_m,
        adam_v=state.adam_v,
        episodes=state.episodes,
        env_steps=state.env_steps,
        elapsed_s=state.elapsed_s,
    )
    os.replace(tmp, path)
    for old in glob.glob(os.path.join(directory, "ckpt_*.tmp.npz")):
        os.remove(old)  # left behind by a run killed mid-write
    for old in sorted(glob.glob(os.path.join(directory, "ckpt_*.npz")))[:-keep]:
        os.remove(old)
    return path


def latest_checkpoint(directory: str) -> str | None:
    paths = sorted(p for p in glob.glob(os.path.join(directory, "ckpt_*.npz")) if ".tmp" not in p)
    return paths[-1] if paths else None


def load_checkpoint(path: str) -> ESState:
    with np.load(path) as f:
        return ESState(
            iteration=int(f["iteration"]),
            params=f["params"].copy(),
            normalizer=RunningNormalizer(float(f["norm_count"]), f["norm_mean"].copy(), f["norm_m2"].copy()),
            adam_m=f["adam_m"].copy(),
            adam_v=f["adam_v"].copy(),
            episodes=int(f["episodes"]),
            env_steps=int(f["env_steps"]),
            elapsed_s=float(f["elapsed_s"]),
        )
