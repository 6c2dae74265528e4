"""Pictures: Gymnasium's rgb_array rendering, frames replayed from a robot's observations, and MP4 videos.

Rendering needs an offscreen OpenGL (EGL here); where there is none these tests are skipped, not failed.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from metactl import sim
from metactl.sim.render import SceneRenderer, frame_stride, render_episode


@pytest.fixture(scope="module")
def gl() -> None:
    family = sim.make_family("halfcheetah_fb")
    try:
        SceneRenderer(family, family.test_tasks()[0]).close()
    except RuntimeError as e:
        pytest.skip(f"no offscreen OpenGL here: {e}")


def test_rgb_array_frames_follow_the_simulation(gl) -> None:
    env = gymnasium.make("metactl/HalfCheetahForwardBackward-v0", render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    assert first.shape == (240, 320, 3) and first.dtype == np.uint8 and first.std() > 10  # a scene, not a blank
    rng = np.random.default_rng(0)
    for _ in range(30):
        env.step(rng.uniform(-1, 1, 6).astype(np.float32))
    assert np.abs(env.render().astype(int) - first).mean() > 1.0  # the cheetah moved
    env.close()


def test_replayed_frames_match_the_live_ones(gl) -> None:
    """A frame drawn from observations alone (root x integrated from the observed velocity) looks like the frame of
    the simulator's true state: what makes videos of serial and real robots trustworthy."""
    family = sim.make_family("halfcheetah_fb")
    task = family.test_tasks()[0]
    env = gymnasium.make(family.env_id, render_mode="rgb_array").unwrapped
    env.set_task(task)
    replay = SceneRenderer(family, task)
    obs, _ = env.reset(seed=1)
    replay.observe(obs)
    rng = np.random.default_rng(1)
    for _ in range(40):
        obs, *_ = env.step(rng.uniform(-1, 1, 6).astype(np.float32))
        replay.observe(obs)
    live, replayed = env.render().astype(int), replay.frame().astype(int)
    blank = SceneRenderer(family, task).frame().astype(int)  # the robot at the origin, all joints zero
    assert np.abs(live - replayed).mean() < 0.25 * np.abs(live - blank).mean()
    replay.close()


def test_a_video_of_an_episode(gl, tmp_path) -> None:
    import imageio.v2 as imageio

    family = sim.make_family("four_corners")
    obs = np.linspace([0.0, 0.0], [2.0, 2.0], 40)  # walk to the goal of test task 0
    path = render_episode(family, family.test_tasks()[0], obs, str(tmp_path / "walk.mp4"))
    frames = imageio.mimread(path, memtest=False)
    assert len(frames) == len(range(0, 40, frame_stride(family.control_period)))  # 0.1 s steps at 25 fps: all 40
    assert frames[0].shape[:2] == (240, 320)
    assert np.abs(frames[-1].astype(int) - frames[0]).sum() > 0
