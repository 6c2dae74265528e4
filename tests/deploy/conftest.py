"""Session fixtures: tiny trained policies (real training, ~1 s each) and their exported bundles."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from metactl import train
from metactl.deploy.export import export_bundle

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(REPO, "hardware_configs")

HILL_CLIMB = {"name": "hill_climb", "queries": 10, "sigma": 0.2, "mode": "batch", "batch_size": 5, "params": "all"}
ES_GRAD = {"name": "es_grad", "queries": 2, "sigma": 0.1, "step_size": 0.05, "params": "all"}
TINY_FOUR_CORNERS: dict[str, Any] = {
    "iterations": 2,
    "directions": 2,
    "tasks_per_iteration": 1,
    "eval_every": 1,
    "eval_repeats": 1,
}
TINY_CHEETAH: dict[str, Any] = {
    "iterations": 1,
    "directions": 1,
    "tasks_per_iteration": 1,
    "eval_every": 1,
    "eval_repeats": 1,
    "horizon": 20,
}


def _train(tmp_factory: pytest.TempPathFactory, name: str, family: str, **overrides: Any) -> str:
    out = str(tmp_factory.mktemp(name))
    return train.train(train.config_for(family, **overrides), out, progress=False).policy_path


@pytest.fixture(scope="session")
def fc_policy_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """four_corners, linear, batch hill climbing (schedule (1, 5, 5))."""
    return _train(tmp_path_factory, "fc_policy", "four_corners", **TINY_FOUR_CORNERS, adaptation=HILL_CLIMB)


@pytest.fixture(scope="session")
def fc_bundle(fc_policy_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    return export_bundle(fc_policy_path, str(tmp_path_factory.mktemp("fc_bundle")))


def _identity_bundle(tmp_factory: pytest.TempPathFactory, family: str, settings: dict[str, Any]) -> str:
    """A bundle whose ES-gradient operator has step size 0: adaptation is the identity."""
    policy = _train(tmp_factory, f"{family}_identity", family, **settings, adaptation={**ES_GRAD, "step_size": 0.0})
    return export_bundle(policy, str(tmp_factory.mktemp(f"{family}_identity_bundle")))


@pytest.fixture(scope="session")
def fc_identity_bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _identity_bundle(tmp_path_factory, "four_corners", TINY_FOUR_CORNERS)


@pytest.fixture(scope="session")
def hc_linear_policy_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _train(tmp_path_factory, "hc_linear", "halfcheetah_fb", **TINY_CHEETAH, adaptation=ES_GRAD, policy="linear")


@pytest.fixture(scope="session")
def hc_mlp_policy_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _train(
        tmp_path_factory, "hc_mlp", "halfcheetah_fb", **TINY_CHEETAH, adaptation=ES_GRAD, policy="mlp", hidden=(8,)
    )


@pytest.fixture(scope="session")
def hc_identity_bundle(tmp_path_factory: pytest.TempPathFactory) -> str:
    """halfcheetah_fb has reset noise, so episode seeds matter."""
    return _identity_bundle(tmp_path_factory, "halfcheetah_fb", TINY_CHEETAH)


@pytest.fixture(scope="session")
def hc_bundle(hc_linear_policy_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    return export_bundle(hc_linear_policy_path, str(tmp_path_factory.mktemp("hc_bundle")))


@pytest.fixture(scope="session")
def shipped_config() -> Callable[[str], str]:
    """Path of the shipped hardware config of a family's simulated robot."""
    return lambda family: os.path.join(CONFIG_DIR, f"sim_{family}.toml")


TINY_MB: dict[str, Any] = {
    "family": "halfcheetah_disabled_joint",
    "iterations": 2,
    "rollouts": 2,
    "episode_steps": 40,
    "train_steps": 20,
    "samples": 16,
    "planning_horizon": 4,
    "posture_limit": 1.0,
    "eval_every": 0,
    "eval_steps": 10,
}


@pytest.fixture(scope="session")
def mb_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny trained GrBAL, ReBAL and MB dynamics models (real training, ~2 s each): method -> model.npz."""
    from metactl.train.mb_config import MBConfig
    from metactl.train.mb_train import train_model_based

    out = {}
    for method in ("grbal", "rebal", "mb"):
        config = MBConfig(method=method, **TINY_MB)
        out[method] = train_model_based(config, str(tmp_path_factory.mktemp(method)), progress=False).model_path
    return out


@pytest.fixture(scope="session")
def mb_bundles(mb_models: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from metactl.deploy.model_export import export_model_bundle

    return {m: export_model_bundle(p, str(tmp_path_factory.mktemp(f"{m}_bundle"))) for m, p in mb_models.items()}


@pytest.fixture
def serial_robot_config(tmp_path) -> Callable[..., str]:
    """The shipped serial HalfCheetah config with 20-step episodes and edits (old text -> new text): its path."""

    def make(**edits: str) -> str:
        with open(os.path.join(CONFIG_DIR, "serial_halfcheetah_fb.toml")) as f:
            text = f.read().replace("# episode_steps = 200", "episode_steps = 20")
        for old, new in edits.items():
            assert old in text, old
            text = text.replace(old, new)
        path = tmp_path / f"robot_{len(list(tmp_path.glob('robot_*.toml')))}.toml"
        path.write_text(text)
        return str(path)

    return make
