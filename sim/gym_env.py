"""Gymnasium view of a task family: one instance of the same simulator the batched engine steps.

``gymnasium.make("metactl/HalfCheetahDisabledJoint-v0", render_mode="rgb_array")`` — ids are registered by
``metactl.gymnasium_envs`` (with ``max_episode_steps`` = the family's horizon). The step is the batched
engine's one-instance path (``step_one``): the same physics and reward as training, without the batch's loops.
``render_mode``: "rgb_array" returns offscreen frames (``metactl.sim.render``), "human" shows MuJoCo's viewer.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np

from metactl.sim.tasks import Task


class TaskFamilyEnv(gymnasium.Env):
    """A single-instance env with ``sample_tasks`` / ``set_task`` / ``test_tasks`` for meta-RL.

    ``reset(seed=s)`` starts the same episode as ``BatchSim.reset([s])``; episodes are truncated at the family's
    horizon. Observations are float64 [obs_dim]; the array returned by ``step`` is a fresh copy.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array", "human"], "render_fps": 20}

    def __init__(self, family: str, task: Task | None = None, render_mode: str | None = None):
        from metactl.sim.registry import make_family

        if render_mode not in (None, *self.metadata["render_modes"]):
            raise gymnasium.error.Error(f"render_mode {render_mode!r} is not one of {self.metadata['render_modes']}")
        self.family = make_family(family)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": max(1, round(1.0 / self.family.control_period))}
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (self.family.obs_dim,), np.float64)
        self.action_space = gymnasium.spaces.Box(
            self.family.action_low.astype(np.float32), self.family.action_high.astype(np.float32), dtype=np.float32
        )
        self._horizon = self.family.horizon
        self._renderer: Any = None
        self._viewer: Any = None
        self.set_task(task if task is not None else self.family.test_tasks()[0])
        self._t = 0

    def sample_tasks(self, rng: np.random.Generator, n: int) -> list[Task]:
        return self.family.sample_tasks(rng, n)

    def test_tasks(self) -> list[Task]:
        return self.family.test_tasks()

    def set_task(self, task: Task) -> None:
        self._sim = self.family.make_batch([task])
        self._step = getattr(self._sim, "step_one", None) or self._step_batch
        self.task = task
        self.close()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        self._t = 0
        obs = self._sim.reset([episode_seed])[0]
        self._show(obs)
        return obs, {}

    def step(self, action: np.ndarray):  # type: ignore[override]
        self._t += 1
        if self.render_mode is None:
            return (*self._step(action), self._t >= self._horizon, {})
        obs, reward, terminated = self._step(action)
        self._show(obs)
        return obs, reward, terminated, self._t >= self._horizon, {}

    def _step_batch(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        obs, reward, terminated = self._sim.step(np.asarray(action, dtype=np.float64)[None])
        return obs[0].copy(), float(reward[0]), bool(terminated[0])

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """The current frame [240, 320, 3] uint8 ("rgb_array"); "human" draws in the viewer as the env steps."""
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            from metactl.sim.render import SceneRenderer

            self._renderer = SceneRenderer(self.family, self.task)
        if hasattr(self._sim, "data"):  # a MuJoCo family: its true state, drawn with the model it runs now
            return self._renderer.frame(live=self._sim.data(0), model=self._sim.models[0])
        self._renderer.observe(self._obs)
        return self._renderer.frame()

    def _show(self, obs: np.ndarray) -> None:
        self._obs = obs
        if self.render_mode == "human":
            self._human()

    def _human(self) -> None:
        """MuJoCo's interactive viewer on the simulated robot itself (needs a display)."""
        if not hasattr(self._sim, "data"):
            raise gymnasium.error.Error(f"render_mode 'human' needs a MuJoCo family; {self.family.name} is 2-D")
        model = self._sim.models[0]
        if self._viewer is not None and self._viewer_model is not model:  # a mid-episode change: the new robot
            self._viewer.close()
            self._viewer = None
        if self._viewer is None:
            import mujoco.viewer

            self._shown, self._viewer_model = self._sim.data(0), model
            self._viewer = mujoco.viewer.launch_passive(model, self._shown)
        with self._viewer.lock():
            self._sim.data(0, self._shown)
        self._viewer.sync()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
