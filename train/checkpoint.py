"""Checkpoints that can be trusted: written atomically with a checksum, read back verified, resumed from the newest
intact one. Also the ES state (everything else of an ES run derives from (seed, iteration)).

A checkpoint is an ``.npz`` whose arrays are covered by a sha256 stored beside them (``__sha256__``). A file that is
truncated, empty, random, missing an array or altered fails ``load_checked`` with ``CheckpointError`` naming it and
why; ``resume`` then falls back to the next newest checkpoint and says so (a run killed mid-write, a disk error).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import logging
import os
import zipfile
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from metactl.controllers import RunningNormalizer

log = logging.getLogger(__name__)
CHECKSUM_KEY = "__sha256__"
T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint or data file that cannot be read back as written (user-facing: names the file and why)."""


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checked(path: str, arrays: dict[str, Any]) -> str:
    """Write ``arrays`` to ``path`` (.npz) with their checksum, atomically (a crash leaves the old file or none)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **arrays, **{CHECKSUM_KEY: np.array(_digest(arrays))})
    os.replace(tmp, path)
    return path


def load_checked(path: str, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays of a ``save_checked`` file, verified; ``CheckpointError`` naming the file if it is not intact."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:80]})") from None
    stored = arrays.pop(CHECKSUM_KEY, None)
    if stored is None:
        raise CheckpointError(f"{path} has no checksum (written by an older metactl, or not a checkpoint)")
    if str(stored) != _digest(arrays):
        raise CheckpointError(f"{path} does not match its checksum (altered or damaged)")
    missing = [k for k in required if k not in arrays]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}")
    return arrays


def checkpoint_paths(directory: str) -> list[str]:
    """Checkpoints in ``directory``, newest first (temporary files of an interrupted write excluded)."""
    return sorted((p for p in glob.glob(os.path.join(directory, "ckpt_*.npz")) if ".tmp" not in p), reverse=True)


def resume(directory: str, load: Callable[[str], T]) -> tuple[T, str, list[str]]:
    """The newest checkpoint of ``directory`` that ``load`` reads (it raises ``CheckpointError`` for one that is
    not intact): (its state, its path, why each newer one was skipped). Every skip is logged as a warning."""
    paths = checkpoint_paths(directory)
    if not paths:
        raise CheckpointError(f"--resume: no checkpoint in {directory}; start without --resume")
    skipped: list[str] = []
    for path in paths:
        try:
            state = load(path)
        except CheckpointError as e:
            skipped.append(str(e))
            log.warning("--resume: %s; trying the next older checkpoint", e)
            continue
        if skipped:
            log.warning("--resume: resuming from %s, the newest intact checkpoint", path)
        return state, path, skipped
    raise CheckpointError(f"--resume: no intact checkpoint in {directory}: {'; '.join(skipped)}")


def prune(directory: str, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints; remove temporary files a killed write left."""
    for old in glob.glob(os.path.join(directory, "ckpt_*.tmp.npz")):
        os.remove(old)
    for old in checkpoint_paths(directory)[keep:]:
        os.remove(old)


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


ES_KEYS = ("iteration", "params", "norm_count", "norm_mean", "norm_m2", "adam_m", "adam_v", "episodes", "env_steps",
           "elapsed_s")  # fmt: skip


def save_checkpoint(directory: str, state: ESState, keep: int = 3) -> str:
    """Write ``ckpt_<iteration>.npz`` (checked, atomic) and keep only the newest ``keep``."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"ckpt_{state.iteration:06d}.npz")
    n = state.normalizer
    arrays = {"iteration": state.iteration, "params": state.params, "norm_count": n.count, "norm_mean": n.mean,
              "norm_m2": n.m2, "adam_m": state.adam_m, "adam_v": state.adam_v, "episodes": state.episodes,
              "env_steps": state.env_steps, "elapsed_s": state.elapsed_s}  # fmt: skip
    save_checked(path, arrays)
    prune(directory, keep)
    return path


def latest_checkpoint(directory: str) -> str | None:
    paths = checkpoint_paths(directory)
    return paths[0] if paths else None


def load_checkpoint(path: str) -> ESState:
    """The ES state in ``path``; ``CheckpointError`` if the file is not intact."""
    f = load_checked(path, ES_KEYS)
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
