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


def test_a_mid_episode_change_is_drawn_with_the_changed_robot(gl) -> None:
    """Ant, leg 3 crippled at step 250: frames replayed from the observations draw the healthy robot up to the change
    and the shrunken leg after it, as renderers of the two tasks do; the live (rgb_array) frame after the change is
    the crippled model's, not the healthy one's."""
    family = sim.make_family("ant_crippled_leg")
    change = family.change_tests()[0]
    env = gymnasium.make(family.env_id, render_mode="rgb_array").unwrapped
    env.set_task(change)
    replay, observations, replayed = SceneRenderer(family, change), [], {}
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for t in range(change.at_step + 2):
        observations.append(obs)
        replay.observe(obs)
        if t >= change.at_step:  # the last observation before the change, and the first after it
            replayed[t] = replay.frame().astype(int)
        obs, *_ = env.step(rng.uniform(-1, 1, 8).astype(np.float32))

    def drawn_as(task, upto: int = -1, live=None) -> np.ndarray:
        """A renderer of ``task`` alone: the observations up to index ``upto``, or the simulator state ``live``."""
        renderer = SceneRenderer(family, task)
        for o in observations[: upto + 1]:
            renderer.observe(o)
        frame = renderer.frame(live=live).astype(int)
        renderer.close()
        return frame

    for t, (now, other) in {change.at_step: (change.first, change.then),
                            change.at_step + 1: (change.then, change.first)}.items():  # fmt: skip
        assert np.array_equal(replayed[t], drawn_as(now, t))
        assert not np.array_equal(replayed[t], drawn_as(other, t))  # the leg's size shows
    live = env.render().astype(int)
    assert live.std() > 10
    assert np.array_equal(live, drawn_as(change.then, live=env._sim.data(0)))
    assert not np.array_equal(live, drawn_as(change.first, live=env._sim.data(0)))
    replay.close()
    env.close()
