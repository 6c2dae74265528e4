"""A training process killed with SIGKILL and resumed from its checkpoint ends exactly like an uninterrupted run."""

from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from metactl import train
from metactl.controllers import load_policy
from metactl.train.run_log import COLUMNS, read_metrics

ITERATIONS = 20


def settings(tiny_run: dict[str, Any]) -> dict[str, Any]:
    """~75 ms per iteration (measured, idle machine): once checkpoint 2 appears the child still needs 18 iterations
    (~1.3 s) to finish while we poll every 5 ms, so the kill lands mid-training (asserted via the exit signal)."""
    return {
        "iterations": ITERATIONS,
        "directions": 4,
        "tasks_per_iteration": 2,
        "eval_every": 3,
        "eval_repeats": 1,
        "checkpoint_every": 1,
        "adaptation": tiny_run["adaptation"],
    }


def checkpoint_iterations(out: str) -> list[int]:
    """Iterations of the complete checkpoints in ``out`` (temporary ``*.tmp.npz`` files excluded)."""
    names = (os.path.basename(p) for p in glob.glob(os.path.join(out, "checkpoints", "ckpt_*.npz")))
    return sorted(int(m.group(1)) for n in names if (m := re.fullmatch(r"ckpt_(\d+)\.npz", n)))


def start_training_process(kwargs: dict[str, Any], out: str, cwd: str, log: Path) -> subprocess.Popen:
    """``python -c "from metactl import train; train.train(...)"`` in its own process."""
    config = f"train.config_for('four_corners', **{kwargs!r})"
    code = f"from metactl import train; train.train({config}, {out!r}, progress=False)"
    with open(log, "w") as err:
        return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)


def kill_after_checkpoint(proc: subprocess.Popen, out: str, log: Path, at_least: int, timeout_s: float = 60.0) -> None:
    """SIGKILL ``proc`` as soon as a checkpoint of iteration >= ``at_least`` exists in ``out``."""
    deadline = time.monotonic() + timeout_s
    try:
        while max(checkpoint_iterations(out), default=0) < at_least:
            assert proc.poll() is None, f"training process exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, "no checkpoint appeared in time"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_killed_run_resumes_to_the_same_result(tmp_path: Path, repo_root: str, tiny_run: dict[str, Any]) -> None:
    kwargs = settings(tiny_run)
    killed, reference = str(tmp_path / "killed"), str(tmp_path / "reference")
    log = tmp_path / "child_stderr.txt"
    proc = start_training_process(kwargs, killed, repo_root, log)
    kill_after_checkpoint(proc, killed, log, at_least=2)

    assert proc.returncode == -signal.SIGKILL, log.read_text()
    resumed_from = max(checkpoint_iterations(killed))
    assert 2 <= resumed_from < ITERATIONS
    assert not os.path.exists(os.path.join(killed, "policy.npz"))  # it really died mid-training

    cfg = train.config_for("four_corners", **kwargs)
    resumed = train.train(cfg, killed, resume=True, progress=False)
    uninterrupted = train.train(cfg, reference, progress=False)

    a, _ = load_policy(resumed.policy_path)
    b, _ = load_policy(uninterrupted.policy_path)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.normalizer.mean, b.normalizer.mean)
    np.testing.assert_array_equal(a.normalizer.std, b.normalizer.std)

    columns = [c for c in COLUMNS if c != "wall_s"]
    rows_resumed = [{c: r[c] for c in columns} for r in read_metrics(os.path.join(killed, "metrics.csv"))]
    rows_reference = [{c: r[c] for c in columns} for r in read_metrics(os.path.join(reference, "metrics.csv"))]
    assert [int(r["iteration"]) for r in rows_resumed] == list(range(1, ITERATIONS + 1))  # no duplicated rows
    assert rows_resumed == rows_reference
    for key in ("episodes", "env_steps", "heldout_pre_per_task", "heldout_post_per_task"):
        assert resumed.summary[key] == uninterrupted.summary[key], key


def test_resume_after_the_newest_checkpoint_was_damaged_ends_where_an_uninterrupted_run_ends(tmp_path, tiny_run):
    """A damaged newest checkpoint (truncated by a disk error) is named and skipped; the run resumes from the one
    before and, every draw being derived from (seed, iteration), ends bit-identical to an uninterrupted run."""
    config = train.config_for("four_corners", **{**settings(tiny_run), "iterations": 4})
    reference = train.train(config, str(tmp_path / "reference"), progress=False)
    out = str(tmp_path / "damaged")
    train.train(config, out, progress=False)
    newest = Path(out) / "checkpoints" / "ckpt_000004.npz"
    newest.write_bytes(newest.read_bytes()[:100])
    resumed = train.train(config, out, resume=True, progress=False)
    a, b = np.load(reference.policy_path), np.load(resumed.policy_path)
    np.testing.assert_array_equal(a["params"], b["params"])
