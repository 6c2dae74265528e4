"""``metactl bench rollout``: rollout throughput against raw MuJoCo, measured in one run.

On the same HalfCheetah model and with the same random linear policy:
- raw ``mj_step`` physics (frame_skip substeps per control step) replaying the controls of our
  rollout from the same initial states; and bare physics in 1 vs 2 processes (this machine's
  parallel limit);
- our batched closed-loop rollout (``sim.rollout``), our Gymnasium env, Gymnasium's HalfCheetah-v5;
- ES-style evaluation (per-row parameters) through the worker backends: 1 vs 2 local
  processes, and local vs Ray at the same worker count.
Quote the ratios, not absolute numbers: the machine is shared and noisy. The contenders of each ratio run
interleaved (raw physics and our rollout repeat in turn; the two envs alternate every ``BLOCK`` steps), so a
drift in the machine's load hits both. Prints a table and writes ``summary.json``.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from metactl.report import format_table
from metactl.summary import write_summary

FAMILY = "halfcheetah_fb"
BLOCK = 500
"""Env steps per timed block: the two envs alternate block by block."""


def _raw_physics(steps: int) -> float:
    """Seconds for ``steps`` control steps of bare physics with random controls."""
    ctrl = np.tanh(np.random.default_rng(0).standard_normal((1000, 6)))  # HalfCheetah's 6 actuators
    return _bare_physics(ctrl[np.arange(steps) % 1000])


def _bare_physics(controls: np.ndarray, start: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Seconds of bare ``mj_step`` on HalfCheetah applying ``controls`` [T, nu], from its default state or from
    ``start`` (qpos, qvel): the physics alone, nothing else in the loop."""
    import mujoco

    from metactl.sim.locomotion import FRAME_SKIP, base_model

    model = base_model("half_cheetah.xml")
    data = mujoco.MjData(model)
    if start is not None:
        data.qpos[:], data.qvel[:] = start
        mujoco.mj_forward(model, data)
    t0 = time.perf_counter()
    for u in controls:
        data.ctrl[:] = u
        mujoco.mj_step(model, data, FRAME_SKIP)
    return time.perf_counter() - t0


def _replay(family: Any, task: Any, policy: Any, batch: int, horizon: int) -> float:
    """Seconds of bare ``mj_step`` replaying the controls our rollout chose, from the same states.

    The fair "raw physics" for a closed-loop rollout: identical trajectories, so identical
    contact work; only the policy, observations and rewards are left out.
    """
    import mujoco

    from metactl import sim
    from metactl.sim.locomotion import FRAME_SKIP

    b = family.make_batch([task] * batch)
    controls = np.zeros((horizon, batch, b.act_dim))

    def recording(o: np.ndarray) -> np.ndarray:
        a = policy(o)
        controls[recording.t] = np.clip(a, family.action_low, family.action_high)
        recording.t += 1
        return a

    recording.t = 0  # type: ignore[attr-defined]
    sim.rollout(b, recording, list(range(batch)), horizon)
    b.reset(list(range(batch)))
    pairs = [(m, b.data(i)) for i, m in enumerate(b.models)]  # one MjData each, in the batch's initial states
    t0 = time.perf_counter()
    for t in range(horizon):
        for (m, d), u in zip(pairs, controls[t], strict=True):
            d.ctrl[:] = u
            mujoco.mj_step(m, d, FRAME_SKIP)
    return time.perf_counter() - t0


def _best(fn: Any, repeats: int) -> float:
    return min(fn() for _ in range(repeats))


def _best_interleaved(fns: list[Any], repeats: int) -> list[float]:
    """The best of ``repeats`` runs of each of ``fns``, run in turn (a, b, a, b, ...): on a shared machine the
    load drifts over seconds, and interleaving exposes every contender to the same drift."""
    times = [[fn() for fn in fns] for _ in range(repeats)]
    return [min(run[i] for run in times) for i in range(len(fns))]


def _interleaved_blocks(envs: list[Any], blocks: Any, repeats: int) -> list[tuple[float, float]]:
    """Per env, the sums over blocks of each block's best time over ``repeats`` runs, the envs alternating block
    by block (so both see the same machine load); ``blocks(env)`` yields per-block time pairs."""
    best: list[list[np.ndarray]] = [[] for _ in envs]
    for _ in range(repeats):
        runs = [blocks(env) for env in envs]
        for i, run in enumerate(zip(*runs, strict=True)):
            for e, pair in enumerate(run):
                if len(best[e]) <= i:
                    best[e].append(np.asarray(pair))
                else:
                    best[e][i] = np.minimum(best[e][i], pair)
    return [tuple(np.sum(b, axis=0)) for b in best]  # type: ignore[misc]


def _policy(obs_dim: int, act_dim: int, rows: int) -> np.ndarray:
    return 0.3 * np.random.default_rng(1).standard_normal((rows, obs_dim * act_dim + act_dim))


def bench_rollout(out_dir: str, steps: int = 20_000, repeats: int = 3, ray: bool = True) -> dict[str, Any]:
    import gymnasium

    from metactl import sim, train
    from metactl.controllers import NormalizerSnapshot
    from metactl.train.lockstep import Evaluator
    from metactl.train.workers import InProcess, LocalProcesses, RayWorkers

    family = sim.make_family(FAMILY)
    task = family.test_tasks()[0]
    spec = train.config_for(FAMILY, policy="linear").policy_spec()  # the ARS/ES-MAML linear policy
    w = _policy(family.obs_dim, family.act_dim, 1)[0]
    rates: dict[str, float] = {}

    batch, horizon = 64, max(1, steps // 64)
    params = np.tile(w, (batch, 1))
    ident = NormalizerSnapshot.identity(family.obs_dim)

    def policy(o: np.ndarray) -> np.ndarray:
        return spec.forward(params, ident.normalize(o))

    def ours() -> float:
        b = family.make_batch([task] * batch)
        t0 = time.perf_counter()
        sim.rollout(b, policy, list(range(batch)), horizon)
        return time.perf_counter() - t0

    raw_s, ours_s = _best_interleaved([lambda: _replay(family, task, policy, batch, horizon), ours], 3 * repeats)
    rates["raw_physics"], rates["ours_rollout"] = batch * horizon / raw_s, batch * horizon / ours_s

    ours_env = gymnasium.make(family.env_id).unwrapped
    ours_env.set_task(task)
    obs0, _ = ours_env.reset(seed=0)
    start = (ours_env._sim.qpos[0].copy(), ours_env._sim.qvel[0].copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_env = gymnasium.make("HalfCheetah-v5").unwrapped
    env_controls = np.zeros((steps, family.act_dim))
    last_obs: dict[str, np.ndarray] = {}

    def env_blocks(env: Any, record: bool = False) -> Any:
        """Run ``steps`` closed-loop steps, yielding (seconds of the loop, seconds of its ``env.step`` calls) per
        block of ``BLOCK`` steps. Both envs start from the same state and so run the same trajectory, bit for bit
        (the same physics and policy): the same contact work, so the ratios are the cost of the env itself."""
        env.reset(seed=0)
        if env is gym_env:
            env.set_state(*start)
        obs, clock = obs0, time.perf_counter
        for first in range(0, steps, BLOCK):
            in_step = 0.0
            t0 = clock()
            for t in range(first, min(first + BLOCK, steps)):
                action = spec.forward(w, obs[None])[0].astype(np.float32)
                if record:
                    env_controls[t] = action
                t1 = clock()
                obs, *_ = env.step(action)
                in_step += clock() - t1
            yield clock() - t0, in_step
        last_obs[type(env).__name__] = obs

    for _ in env_blocks(ours_env, record=True):
        pass
    (ours_loop, ours_step), (gym_loop, gym_step) = _interleaved_blocks([ours_env, gym_env], env_blocks, repeats)
    rates["ours_gymnasium_env"], rates["gymnasium_halfcheetah_v5"] = steps / ours_loop, steps / gym_loop
    env_physics_s = _best(lambda: _bare_physics(np.clip(env_controls, -1, 1), start), repeats) / steps

    def policy_loop() -> float:  # the env loops' own policy cost, so the loop's ceiling below is known
        obs = np.zeros((1, family.obs_dim))
        t0 = time.perf_counter()
        for _ in range(steps):
            spec.forward(w, obs)[0].astype(np.float32)
        return time.perf_counter() - t0

    policy_s = _best(policy_loop, repeats) / steps

    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        list(pool.map(_raw_physics, [100, 100]))  # warm up both workers
        one = _best(lambda: pool.submit(_raw_physics, steps).result(), repeats)

        def two() -> float:
            t0 = time.perf_counter()
            list(pool.map(_raw_physics, [steps, steps]))
            return time.perf_counter() - t0

        speedup_raw = 2 * one / _best(two, repeats)

    rows, es_horizon = 64, 400
    tasks = family.sample_tasks(np.random.default_rng(2), rows)
    es_params = _policy(family.obs_dim, family.act_dim, rows)

    def evaluate(backend: Any) -> float:
        ev = Evaluator(family, spec, ident, es_horizon, backend)
        ev.returns(es_params[:4], tasks[:4], list(range(4)))  # warm up
        t0 = time.perf_counter()
        ev.returns(es_params, tasks, list(range(rows)))
        return time.perf_counter() - t0

    t_one = _best(lambda: evaluate(InProcess()), repeats)
    local = LocalProcesses(2)
    try:
        t_two = _best(lambda: evaluate(local), repeats)
    finally:
        local.close()
    ray_vs_local = None
    if ray and importlib.util.find_spec("ray") is not None:
        ray_backend = RayWorkers(2)
        try:
            ray_vs_local = _best(lambda: evaluate(ray_backend), repeats) / t_two
        finally:
            ray_backend.close()

    summary = {
        "control_steps_per_s": rates,
        "ratio_vs_raw_physics": rates["ours_rollout"] / rates["raw_physics"],
        "ratio_vs_gymnasium": rates["ours_rollout"] / rates["gymnasium_halfcheetah_v5"],
        # env.step alone (the loop's policy excluded), on the same trajectory
        "env_ratio_vs_gymnasium": gym_step / ours_step,
        "env_step_us": {
            "ours": 1e6 * ours_step / steps,
            "gymnasium": 1e6 * gym_step / steps,
            "physics": 1e6 * env_physics_s,
        },
        "env_same_trajectory": bool(np.array_equal(*last_obs.values())),
        # an env with no cost beyond the physics of its trajectory: the most any env step can reach
        "env_ratio_ceiling": (gym_step / steps) / env_physics_s,
        # the whole loop, policy included (the policy's cost is the same in both)
        "env_loop_ratio_vs_gymnasium": gym_loop / ours_loop,
        "env_loop_ratio_ceiling": (gym_loop / steps) / (env_physics_s + policy_s),
        "speedup_2_raw_physics": speedup_raw,
        "speedup_2_workers": t_one / t_two,
        "ray_vs_local": ray_vs_local,
    }
    _print(summary)
    write_summary(out_dir, summary)
    return summary


def _print(s: dict[str, Any]) -> None:
    rates = s["control_steps_per_s"]
    rows = [(k, round(v), v / rates["raw_physics"]) for k, v in rates.items()]
    print(format_table(f"metactl bench rollout: {FAMILY}, 1 process", ("what", "control steps/s", "vs raw"), rows))
    ray = "not run (Ray not installed)" if s["ray_vs_local"] is None else f"{s['ray_vs_local']:.3f}"
    rows2 = [
        ("ratio_vs_raw_physics", f"{s['ratio_vs_raw_physics']:.3f}", ">= 0.95"),
        ("ratio_vs_gymnasium", f"{s['ratio_vs_gymnasium']:.3f}", ">= 1.6"),
        ("env_ratio_vs_gymnasium", f"{s['env_ratio_vs_gymnasium']:.3f}", ">= 1.2 (env.step alone)"),
        ("env_ratio_ceiling", f"{s['env_ratio_ceiling']:.3f}", "physics only"),
        ("env_loop_ratio_vs_gymnasium", f"{s['env_loop_ratio_vs_gymnasium']:.3f}", "policy + env.step"),
        ("env_loop_ratio_ceiling", f"{s['env_loop_ratio_ceiling']:.3f}", "physics + policy only"),
        ("env_same_trajectory", str(s["env_same_trajectory"]), "True: the same physics work"),
        ("speedup_2_raw_physics", f"{s['speedup_2_raw_physics']:.3f}", "the parallel limit"),
        ("speedup_2_workers", f"{s['speedup_2_workers']:.3f}", f">= {0.95 * s['speedup_2_raw_physics']:.3f}"),
        ("ray_vs_local (time)", ray, "<= 1.10"),
    ]
    print(format_table("ratios (one run)", ("key", "measured", "target"), rows2))
