"""Shared fixtures: the repository root, tiny training settings and one finished tiny run shared by read-only tests."""

from __future__ import annotations

import os
import re

if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"  # before any test module imports MuJoCo: offscreen rendering
from collections.abc import Callable
from typing import Any

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_ADAPTATION: dict[str, Any] = {"name": "hill_climb", "queries": 4, "sigma": 1.0, "mode": "average"}
"""Pinned (not the preset's) so tests do not change when presets are tuned: schedule (1, 1, 1, 1, 1), i.e. 5 adaptation
episodes + 1 evaluation episode = 6 episodes per task."""

TINY_RUN: dict[str, Any] = {
    "iterations": 3,
    "directions": 2,
    "tasks_per_iteration": 1,
    "eval_every": 1,
    "eval_repeats": 1,
    "adaptation": TINY_ADAPTATION,
}
"""A four_corners run of 3 iterations x 4 perturbations x 1 task x 6 episodes = 72 episodes: well under a second."""


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():  # type: ignore[no-untyped-def]
    """torch on one thread, as the CLI runs it: the small ops of meta-learning tests ran 30x slower on two threads
    while other jobs shared the two cores (an LSTM-optimizer learning test: 24 s vs 0.75 s). Robot-side import
    checks run in subprocesses, so importing torch here hides nothing."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def repo_root() -> str:
    """Working directory for subprocesses that ``import train`` / ``import sim``."""
    return REPO_ROOT


@pytest.fixture
def short_config(tmp_path) -> Callable[[str, int], str]:
    """A copy of a shipped hardware config with short episodes: (file name, episode_steps) -> the copy's path."""

    def make(name: str, steps: int) -> str:
        with open(os.path.join(REPO_ROOT, "hardware_configs", name)) as f:
            text = re.sub(r"# episode_steps = \d+", f"episode_steps = {steps}", f.read())
        path = tmp_path / f"short_{steps}_{name}"
        path.write_text(text)
        return str(path)

    return make


@pytest.fixture(scope="session")
def tiny_run() -> dict[str, Any]:
    """Keyword overrides for ``train.config_for('four_corners', ...)`` giving a tiny run (a fresh copy per call)."""
    return {**TINY_RUN, "adaptation": dict(TINY_ADAPTATION)}


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Output directory of one finished tiny four_corners run (seed 0). Tests must not modify it."""
    from metactl import train

    out = str(tmp_path_factory.mktemp("tiny_run"))
    train.train(train.config_for("four_corners", **TINY_RUN), out, progress=False)
    return out
