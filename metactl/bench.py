"""``metactl bench env``: how lean the simulation step is, measured against raw MuJoCo in one run.

Times, on the same HalfCheetah model and in the same process: raw ``mj_step`` physics
(frame_skip substeps per control step), our Gymnasium env's ``step``, our batched
closed-loop rollout with a linear policy, and Gymnasium's own ``HalfCheetah-v5``.
Reports control steps per second and ratios (quote ratios, not absolute numbers: the
machine is shared and noisy).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from metactl.report import format_table, write_summary


def _rate(fn: Any, steps: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` control steps per second of ``fn(steps)``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(steps)
        best = min(best, time.perf_counter() - t0)
    return steps / best


def bench_env(out_dir: str, steps: int = 20_000) -> dict[str, Any]:
    import gymnasium
    import mujoco

    import sim
    from sim.locomotion import FRAME_SKIP, base_model

    family = sim.make_family("halfcheetah_fb")
    task = family.test_tasks()[0]
    rng = np.random.default_rng(0)
    w = 0.1 * rng.standard_normal((family.obs_dim, family.act_dim))

    model = base_model("half_cheetah.xml")
    data = mujoco.MjData(model)
    ctrl = np.tanh(rng.standard_normal((1000, model.nu)))

    def raw(n: int) -> None:
        mujoco.mj_resetData(model, data)
        for i in range(n):
            data.ctrl[:] = ctrl[i % 1000]
            mujoco.mj_step(model, data, nstep=FRAME_SKIP)

    env = gymnasium.make(family.env_id).unwrapped
    env.set_task(task)

    def ours_env(n: int) -> None:
        obs, _ = env.reset(seed=0)
        for _ in range(n):
            obs, *_ = env.step(np.tanh(obs @ w))

    batch = 50

    def ours_rollout(n: int) -> None:
        b = family.make_batch([task] * batch)
        sim.rollout(b, lambda o: np.tanh(o @ w), list(range(batch)), n // batch)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_env = gymnasium.make("HalfCheetah-v5").unwrapped

    def gymnasium_env(n: int) -> None:
        obs, _ = gym_env.reset(seed=0)
        for _ in range(n):
            obs, *_ = gym_env.step(np.tanh(obs @ w))

    rates = {
        "raw_physics": _rate(raw, steps),
        "ours_rollout": _rate(ours_rollout, steps),
        "ours_env": _rate(ours_env, steps),
        "gymnasium_halfcheetah_v5": _rate(gymnasium_env, steps),
    }
    summary = {
        "control_steps_per_s": rates,
        "ratio_rollout_vs_raw_physics": rates["ours_rollout"] / rates["raw_physics"],
        "ratio_env_vs_raw_physics": rates["ours_env"] / rates["raw_physics"],
        "ratio_env_vs_gymnasium": rates["ours_env"] / rates["gymnasium_halfcheetah_v5"],
        "ratio_rollout_vs_gymnasium": rates["ours_rollout"] / rates["gymnasium_halfcheetah_v5"],
    }
    rows = [(k, round(v), v / rates["raw_physics"]) for k, v in rates.items()]
    print(
        format_table(
            "metactl bench env: HalfCheetah, control steps/s (5 physics steps each)",
            ("what", "steps/s", "vs raw physics"),
            rows,
        )
    )
    write_summary(out_dir, summary)
    return summary
