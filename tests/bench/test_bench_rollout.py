"""``metactl bench rollout`` at a tiny size: every rate and ratio is measured and written (a smoke test of the
benchmark's plumbing; its numbers are not asserted, they are the benchmark's job)."""

from __future__ import annotations

import json
import math

from metactl.bench.rollout import bench_rollout


def test_bench_rollout_writes_every_rate_and_ratio(tmp_path):
    s = bench_rollout(str(tmp_path), steps=128, repeats=1, ray=False)
    rates = {"raw_physics", "ours_rollout", "ours_gymnasium_env", "gymnasium_halfcheetah_v5"}
    assert set(s["control_steps_per_s"]) == rates
    keys = ("ratio_vs_raw_physics", "env_ratio_vs_gymnasium", "env_ratio_ceiling", "env_loop_ratio_vs_gymnasium",
            "env_loop_ratio_ceiling", "speedup_2_workers")  # fmt: skip
    for key in keys:
        assert math.isfinite(s[key]) and s[key] > 0, key
    # the ceilings leave out everything but physics (and the policy), so no env can beat them by much
    assert s["env_ratio_vs_gymnasium"] < 1.5 * s["env_ratio_ceiling"]
    assert s["env_loop_ratio_vs_gymnasium"] < 1.5 * s["env_loop_ratio_ceiling"]
    # the two envs are timed on the same trajectory: Gymnasium's HalfCheetah-v5 and ours are the same physics
    assert s["env_same_trajectory"]
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["ray_vs_local"] is None and "versions" in written


def test_interleaved_blocks_sums_each_blocks_best_time_and_alternates():
    from metactl.bench.rollout import _interleaved_blocks

    order: list[str] = []
    times = {"a": iter([(3.0, 1.0), (2.0, 2.0), (1.0, 1.0), (5.0, 0.5)]), "b": iter([(4.0, 4.0)] * 4)}

    def blocks(env: str):
        for _ in range(2):
            order.append(env)
            yield next(times[env])

    (a_loop, a_step), (b_loop, b_step) = _interleaved_blocks(["a", "b"], blocks, repeats=2)
    assert order == ["a", "b"] * 4  # block by block, in turn
    assert (a_loop, a_step) == (1.0 + 2.0, 1.0 + 0.5)  # per block, the best of the two runs
    assert (b_loop, b_step) == (8.0, 8.0)
