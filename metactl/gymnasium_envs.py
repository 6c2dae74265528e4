"""The Gymnasium ids of metactl's task families, registered without importing MuJoCo or metactl.sim.

``gymnasium.make("metactl/HalfCheetahDisabledJoint-v0")`` works in any program once metactl is installed:
Gymnasium 1.x no longer loads plugins from entry points, so an installed ``metactl-gymnasium.pth`` (written
by ``build_hooks.py`` into site-packages) calls ``install_hook``, which registers these ids the moment
Gymnasium's registry is imported — by their entry-point strings only; the env's module (and MuJoCo) loads on
``make``. With an editable install, ``import metactl.sim`` (or the id ``"metactl.sim:metactl/..."``) registers
them. ``metactl.sim.registry`` checks this table against the families.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

ENTRY_POINT = "metactl.sim.gym_env:TaskFamilyEnv"
ENVS: dict[str, tuple[str, int]] = {
    "metactl/FourCorners-v0": ("four_corners", 100),
    "metactl/MultiGoalCircle-v0": ("multi_goal_circle", 100),
    "metactl/HalfCheetahForwardBackward-v0": ("halfcheetah_fb", 200),
    "metactl/HalfCheetahGoalVelocity-v0": ("halfcheetah_vel", 200),
    "metactl/AntForwardBackward-v0": ("ant_fb", 200),
    "metactl/HalfCheetahDisabledJoint-v0": ("halfcheetah_disabled_joint", 1000),
    "metactl/HalfCheetahSlope-v0": ("halfcheetah_slope", 1000),
    "metactl/HalfCheetahPier-v0": ("halfcheetah_pier", 1000),
    "metactl/AntCrippledLeg-v0": ("ant_crippled_leg", 500),
}
"""Gymnasium id -> (task family, max_episode_steps = the family's horizon)."""
_REGISTRY_MODULE = "gymnasium.envs.registration"


def register(registration: ModuleType | None = None) -> None:
    """Register every id that is not registered yet (idempotent)."""
    if registration is None:
        import gymnasium.envs.registration as registration
    for env_id, (family, steps) in ENVS.items():
        if env_id not in registration.registry:
            registration.register(env_id, entry_point=ENTRY_POINT, kwargs={"family": family}, max_episode_steps=steps)


class _AfterRegistry(importlib.abc.MetaPathFinder):
    """Runs ``register`` right after Gymnasium's registry module is executed, in whatever program imports it."""

    def find_spec(self, fullname: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _REGISTRY_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)  # type: ignore[arg-type]
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def exec_and_register(module: ModuleType) -> None:
                exec_module(module)
                register(module)

            spec.loader.exec_module = exec_and_register  # type: ignore[method-assign]
        return spec


def install_hook() -> None:
    """Called from the installed .pth at interpreter start: cheap (no import of Gymnasium or MuJoCo)."""
    if _REGISTRY_MODULE in sys.modules:
        register(sys.modules[_REGISTRY_MODULE])
    elif not any(isinstance(f, _AfterRegistry) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterRegistry())
