"""Pictures of a task family's scene: offscreen frames of a live simulation, or replayed from observations.

A robot's log holds what its sensors reported, not the simulator's state, so every picture of a run — a
simulated robot, the emulator over a serial link, a real robot — is drawn the same way: the observation
sets the robot's joints, and the coordinates a robot does not observe (HalfCheetah's x, the Ant's x and y)
are integrated from its observed velocities. Scene parts no sensor sees (the pier's floating blocks) are
drawn at rest. A task that changes mid-episode (``ChangeTask``) is drawn with its second model from the
change on (the crippled Ant leg shrinks). MuJoCo families render with ``mujoco.Renderer`` and the model's
tracking camera (offscreen: ``MUJOCO_GL=egl`` is the default where there is no display); the 2-D navigation
families are drawn with numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metactl.sim.tasks import ChangeTask, GoalTask, Task, TaskFamily

WIDTH, HEIGHT = 320, 240


class SceneRenderer:
    """Frames [HEIGHT, WIDTH, 3] uint8 of one task of ``family``."""

    def __init__(self, family: TaskFamily, task: Task, width: int = WIDTH, height: int = HEIGHT):
        self.family, self.task, self.width, self.height = family, task, width, height
        self._mujoco = hasattr(family, "model_for_key")
        self._pos = np.zeros(2)
        self._renderer = None
        if self._mujoco:
            model = self._task_model(task.first if isinstance(task, ChangeTask) else task)
            self._use(model)
            self._camera = "track" if model.ncam else -1
            skip = family.qpos_skip  # type: ignore[attr-defined]
            nq, nv = family.robot_dofs or (model.nq, model.nv)  # type: ignore[attr-defined]
            self._skip, self._nq, self._nv = skip, nq, nv
            self.reset()

    def _task_model(self, task: Task) -> object:
        return self.family.model_for_key(self.family.model_key(task))  # type: ignore[attr-defined]

    def _use(self, model: object) -> None:
        """Draw ``model`` from now on (a new ``mujoco.Renderer``: it holds the model's meshes and textures)."""
        import mujoco

        if self._renderer is not None and model is self._model:
            return
        try:
            renderer = mujoco.Renderer(model, self.height, self.width)
        except mujoco.FatalError as e:
            raise RuntimeError(
                f"MuJoCo cannot render offscreen here ({e}); set MUJOCO_GL=egl (or osmesa) before MuJoCo is imported"
            ) from None
        data = mujoco.MjData(model)
        if self._renderer is not None:  # the same robot: carry the drawn state over
            data.qpos[:], data.qvel[:] = self._data.qpos, self._data.qvel
            self._renderer.close()
        self._model, self._data, self._renderer = model, data, renderer

    def reset(self) -> None:
        """Start of an episode: the unobserved root coordinates start at 0 (and a changing task at its first
        model)."""
        if self._mujoco:
            self._root, self._last_velocity, self._t = np.zeros(self._skip), None, 0
            if isinstance(self.task, ChangeTask):
                self._use(self._task_model(self.task.first))

    def observe(self, obs: np.ndarray) -> None:
        """Take the robot's next observation ``obs`` [obs_dim]; call once per control step, in order (the unobserved
        root coordinates are integrated from the observed velocities)."""
        obs = np.nan_to_num(np.asarray(obs, dtype=np.float64))
        if not self._mujoco:
            self._pos = obs[:2]
            return
        if isinstance(self.task, ChangeTask) and self._t == self.task.at_step + 1:
            self._use(self._task_model(self.task.then))  # observation at_step + 1 is the first after the change
        self._t += 1
        skip, nq, nv, d = self._skip, self._nq, self._nv, self._data
        n_pos = nq - skip
        velocity = obs[n_pos : n_pos + skip]
        if self._last_velocity is not None:  # trapezoid rule over the control period
            self._root = self._root + 0.5 * (self._last_velocity + velocity) * self.family.control_period
        self._last_velocity = velocity
        d.qpos[skip:nq] = obs[:n_pos]
        d.qvel[:nv] = obs[n_pos : n_pos + nv]
        d.qpos[:skip] = self._root

    def frame(self, live: object = None, model: object = None) -> np.ndarray:
        """The scene as the last observation reports it, or as the simulator state ``live`` (an ``MjData`` of
        ``model``, by default the task's current one) is: a simulation renders its true state, pier blocks
        included."""
        if not self._mujoco:
            return self._draw_map(self._pos)
        import mujoco

        if model is not None:
            self._use(model)
        if live is None:
            mujoco.mj_forward(self._model, self._data)
        self._renderer.update_scene(live if live is not None else self._data, camera=self._camera)
        return self._renderer.render().copy()

    def _draw_map(self, pos: np.ndarray) -> np.ndarray:
        """The 2-D navigation scene: grey field [-5, 5]^2, the goal (green), wrong goals (red), the agent (blue)."""
        img = np.full((self.height, self.width, 3), 235, dtype=np.uint8)
        scale = min(self.width, self.height) / 10.0
        cx, cy = self.width / 2, self.height / 2

        def dot(p: Sequence[float], radius: float, color: tuple[int, int, int]) -> None:
            yy, xx = np.ogrid[: self.height, : self.width]
            px, py = cx + p[0] * scale, cy - p[1] * scale
            img[(xx - px) ** 2 + (yy - py) ** 2 <= (radius * scale) ** 2] = color

        task = self.task
        if isinstance(task, GoalTask):
            for wrong in task.distractors:
                dot(wrong, 0.25, (210, 60, 60))
            dot(task.goal, 0.25, (60, 170, 60))
        dot(pos, 0.15, (40, 90, 200))
        return img

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def frame_stride(control_period: float, fps: int = 25) -> int:
    """Every how many control steps a video at ``fps`` shows a frame (real-time playback)."""
    return max(1, round(1.0 / (fps * control_period)))


def render_episode(
    family: TaskFamily, task: Task, observations: np.ndarray, path: str, *, fps: int = 25, max_frames: int = 500
) -> str:
    """Write the episode of ``observations`` [T, obs_dim] as an MP4 at ``path`` (real-time playback at ``fps``,
    at most ``max_frames`` frames); needs the 'video' extra (imageio with its ffmpeg)."""
    import imageio.v2 as imageio

    stride = frame_stride(family.control_period, fps)
    renderer = SceneRenderer(family, task)
    try:
        frames = []
        for t, obs in enumerate(observations):
            renderer.observe(obs)
            if t % stride == 0 and len(frames) < max_frames:
                frames.append(renderer.frame())
        fps_out = max(1, round(1.0 / (stride * family.control_period)))
        imageio.mimwrite(path, frames, fps=fps_out, codec="libx264", quality=7, macro_block_size=8)
    finally:
        renderer.close()
    return path
