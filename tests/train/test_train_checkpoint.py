"""ES checkpoints: an exact round trip of the whole ES state, and pruning to the newest files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from metactl.controllers import RunningNormalizer
from metactl.train.checkpoint import (
    CheckpointError,
    ESState,
    latest_checkpoint,
    load_checkpoint,
    resume,
    save_checkpoint,
)


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


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif how == "missing_key":
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files if k != "adam_v"}
        np.savez(path, **arrays)
    elif how == "altered":  # a valid file whose numbers changed: only the checksum tells
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
        arrays["params"] = arrays["params"] + 1.0
        np.savez(path, **arrays)


@pytest.mark.parametrize("how", ["truncated", "empty", "random", "missing_key", "altered"])
def test_resume_names_a_damaged_checkpoint_and_falls_back_to_the_newest_intact_one(tmp_path: Path, how, caplog) -> None:
    for i in (1, 2, 3):
        save_checkpoint(str(tmp_path), state(i), keep=3)
    _damage(tmp_path / "ckpt_000003.npz", how)
    with pytest.raises(CheckpointError, match=r"ckpt_000003\.npz"):
        load_checkpoint(str(tmp_path / "ckpt_000003.npz"))
    with caplog.at_level(logging.WARNING):
        restored, path, skipped = resume(str(tmp_path), load_checkpoint)
    assert restored.iteration == 2 and path.endswith("ckpt_000002.npz") and "ckpt_000003.npz" in skipped[0]
    assert "resuming from" in caplog.text and "ckpt_000003.npz" in caplog.text


def test_no_intact_checkpoint_lists_every_file_and_why(tmp_path: Path) -> None:
    save_checkpoint(str(tmp_path), state(1))
    _damage(tmp_path / "ckpt_000001.npz", "empty")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint .*ckpt_000001.npz is not a readable checkpoint"):
        resume(str(tmp_path), load_checkpoint)
