"""ES checkpoints: an exact round trip of the whole ES state, and pruning to the newest files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from metactl.controllers import RunningNormalizer
from metactl.train.checkpoint import ESState, latest_checkpoint, load_checkpoint, save_checkpoint


def state(iteration: int, seed: int = 0) -> ESState:
    rng = np.random.default_rng(seed)
    normalizer = RunningNormalizer(123.0, rng.standard_normal(3), rng.random(3))
    return ESState(iteration, rng.standard_normal(8), normalizer, rng.standard_normal(8), rng.random(8), 96, 9600, 1.25)


def test_checkpoint_round_trip_is_exact(tmp_path: Path) -> None:
    original = state(7)
    loaded = load_checkpoint(save_checkpoint(str(tmp_path), original))
    assert (loaded.iteration, loaded.episodes, loaded.env_steps, loaded.elapsed_s) == (7, 96, 9600, 1.25)
    for name in ("params", "adam_m", "adam_v"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name))
    assert loaded.normalizer.count == original.normalizer.count
    np.testing.assert_array_equal(loaded.normalizer.mean, original.normalizer.mean)
    np.testing.assert_array_equal(loaded.normalizer.m2, original.normalizer.m2)


def test_only_the_newest_checkpoints_are_kept(tmp_path: Path) -> None:
    for i in range(1, 6):
        save_checkpoint(str(tmp_path), state(i), keep=3)
    assert sorted(os.listdir(tmp_path)) == ["ckpt_000003.npz", "ckpt_000004.npz", "ckpt_000005.npz"]
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt_000005.npz")
    assert latest_checkpoint(str(tmp_path / "missing")) is None


def test_latest_checkpoint_ignores_a_temporary_file_left_by_a_crash(tmp_path: Path) -> None:
    save_checkpoint(str(tmp_path), state(1))
    (tmp_path / "ckpt_000002.npz.tmp.npz").write_bytes(b"truncated")  # what a kill during np.savez leaves
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt_000001.npz")


def test_a_stale_temporary_file_does_not_displace_a_real_checkpoint(tmp_path: Path) -> None:
    for i in (1, 2, 3):
        save_checkpoint(str(tmp_path), state(i), keep=3)
    (tmp_path / "ckpt_000003.npz.tmp.npz").write_bytes(b"truncated")
    save_checkpoint(str(tmp_path), state(4), keep=3)
    assert sorted(os.listdir(tmp_path)) == ["ckpt_000002.npz", "ckpt_000003.npz", "ckpt_000004.npz"]
