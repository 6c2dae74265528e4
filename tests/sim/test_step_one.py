"""The Gymnasium env's lean single-instance step (``step_one``, scalar rewards) against the batched step on a batch of
one, in every locomotion family: the same observations and terminations bit for bit, the same rewards to rounding
(the fast path tested against the obviously-correct one)."""

from __future__ import annotations

import numpy as np
import pytest

from metactl import sim

FAMILIES = ("halfcheetah_fb", "halfcheetah_vel", "ant_fb", "halfcheetah_disabled_joint", "ant_crippled_leg",
            "halfcheetah_slope", "halfcheetah_pier")  # fmt: skip


@pytest.mark.parametrize("name", FAMILIES)
def test_step_one_equals_the_batched_step(name: str) -> None:
    family = sim.make_family(name)
    task = family.test_tasks()[0]
    one, batch = family.make_batch([task]), family.make_batch([task])  # physics and observations: bit for bit
    np.testing.assert_array_equal(one.reset([7])[0], batch.reset([7])[0])
    rng = np.random.default_rng(0)
    for _ in range(30):
        action = rng.uniform(-1.5, 1.5, family.act_dim)  # beyond the limits too: both clip
        obs, reward, terminated = one.step_one(action)
        obs_b, reward_b, terminated_b = batch.step(action[None])
        np.testing.assert_array_equal(obs, obs_b[0])
        assert reward == pytest.approx(reward_b[0], rel=1e-12, abs=1e-12) and isinstance(reward, float)  # dot vs einsum
        assert terminated == terminated_b[0] and isinstance(terminated, bool)
