"""``metactl bench inference``: batch-1 policy inference on the robot host, every path in one run.

For a linear HalfCheetah policy and MLPs 32x32 and 64x64 (17 -> 6), per call (p50 and p99 over ``calls``
calls, the paths interleaved in blocks so drift hits them alike):

- ``ort_overridable``: the bundle's graph with ``params`` fed as an input through IOBinding (the runtime's hot
  path before fixed-parameter sessions: onnxruntime cannot fold the weight slicing);
- ``ort_fixed``: ``PolicyBundle.fixed`` — ``params`` folded into constants, IOBinding (the runtime's hot path);
- ``numpy``: a lean float32 numpy forward pass with preallocated buffers (the floor numpy reaches);
- ``numpy_policy``: ``controllers.Policy.act`` (the float64 reference implementation);
- ``c_ctypes``: the ``export_c`` C, built with the system gcc -O2, called through ctypes (mostly ctypes' cost);

and the cost of rebuilding the fixed-parameter session for a new vector (fold + onnxruntime session; done
between episodes when adaptation changes the parameters). The ratio that matters: ``ort_fixed / numpy``.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from metactl.bench.firmware import NETWORKS, bench_policy
from metactl.controllers import Policy
from metactl.report import format_table
from metactl.summary import write_summary

_BLOCK = 500


def bench_inference(out_dir: str, *, calls: int = 20_000, rebuilds: int = 30, seed: int = 0) -> dict[str, Any]:
    """Measure every path for every network; print the table and write ``out_dir/summary.json``."""
    os.makedirs(out_dir, exist_ok=True)
    rows = [_network(name, hidden, os.path.join(out_dir, name.replace(" ", "_")), calls, rebuilds, seed)
            for name, hidden in NETWORKS.items()]  # fmt: skip
    summary = {"calls": calls, "rebuilds": rebuilds, "networks": rows}
    write_summary(out_dir, summary)
    paths = ("ort_fixed", "ort_overridable", "numpy", "numpy_policy", "c_ctypes")
    headers = ("network", *(f"{p} p50 us" for p in paths), "ort_fixed/numpy", "rebuild ms p50")
    table = [(r["network"], *(f"{r[p]['p50_us']:.2f}" for p in paths), f"{r['ort_fixed_over_numpy']:.2f}",
              f"{r['rebuild_ms_p50']:.2f}") for r in rows]  # fmt: skip
    print(format_table("metactl bench inference: batch-1, one run, interleaved", headers, table))
    return summary


def _network(name: str, hidden: tuple[int, ...], work: str, calls: int, rebuilds: int, seed: int) -> dict[str, Any]:
    from metactl.deploy import PolicyBundle
    from metactl.deploy.bundle_writer import write_bundle
    from metactl.deploy.export import build_metadata, build_model

    policy = bench_policy(hidden, seed)
    extra = {"observation_names": [f"o{i}" for i in range(17)], "action_names": [f"a{i}" for i in range(6)],
             "control_period": 0.05, "horizon": 200, "family": "halfcheetah_fb", "train_config": {},
             "adaptation": {"name": "hill_climb", "queries": 2, "sigma": 0.1, "mode": "average"}}  # fmt: skip
    bundle_dir = write_bundle(os.path.join(work, "bundle"), {"policy.onnx": build_model(policy)},
                              build_metadata(policy, extra))  # fmt: skip
    bundle = PolicyBundle.load(bundle_dir)
    obs = np.random.default_rng(seed + 1).standard_normal((_BLOCK, 17)) * 2.0
    fixed = bundle.fixed()
    c_act = _c_policy(policy, work)
    paths: dict[str, Callable[[np.ndarray], Any]] = {
        "ort_fixed": fixed.act,
        "ort_overridable": lambda o: bundle.act(o, bundle.params),
        "numpy": _lean_numpy(policy),
        "numpy_policy": policy.act,
        "c_ctypes": c_act,
    }
    times = {p: [] for p in paths}
    for _ in range(max(1, calls // _BLOCK)):
        for p, fn in paths.items():
            times[p] += _time_block(fn, obs)
    row: dict[str, Any] = {"network": name, "params": policy.spec.num_params}
    for p, ts in times.items():
        row[p] = {"p50_us": float(np.percentile(ts, 50)) * 1e6, "p99_us": float(np.percentile(ts, 99)) * 1e6}
    row["ort_fixed_over_numpy"] = row["ort_fixed"]["p50_us"] / row["numpy"]["p50_us"]
    row["ort_fixed_over_numpy_policy"] = row["ort_fixed"]["p50_us"] / row["numpy_policy"]["p50_us"]
    want = np.vstack([policy.act(o) for o in obs])
    row["max_abs_diff_vs_numpy"] = {p: float(np.abs(np.vstack([fn(o) for o in obs]) - want).max()) for p, fn in
                                    paths.items()}  # fmt: skip
    rng = np.random.default_rng(seed + 2)
    for _ in range(rebuilds):  # a new vector each time, as adaptation proposes
        bundle.fixed(bundle.params + 0.01 * rng.standard_normal(bundle.num_params))
    row["rebuild_ms_p50"] = float(np.median(bundle.rebuild_seconds[1:])) * 1e3
    row["rebuild_ms_max"] = float(np.max(bundle.rebuild_seconds[1:])) * 1e3
    return row


def _time_block(fn: Callable[[np.ndarray], Any], obs: np.ndarray) -> list[float]:
    out = []
    clock = time.perf_counter
    for o in obs:
        t0 = clock()
        fn(o)
        out.append(clock() - t0)
    return out


def _lean_numpy(policy: Policy) -> Callable[[np.ndarray], np.ndarray]:
    """The policy as few float32 numpy calls as possible, into preallocated buffers (the same math)."""
    spec = policy.spec
    layers = [(w.astype(np.float32), b.astype(np.float32)) for w, b in spec.effective_layers(np.asarray(policy.params))]
    mean, std = (np.asarray(a, np.float32) for a in (policy.normalizer.mean, policy.normalizer.std))
    low, high = np.asarray(spec.action_low, np.float32), np.asarray(spec.action_high, np.float32)
    half = (0.5 * (high - low)).astype(np.float32)
    x = np.empty(spec.obs_dim, np.float32)
    bufs = [np.empty(w.shape[1], np.float32) for w, _ in layers]

    def act(obs: np.ndarray) -> np.ndarray:
        np.subtract(obs, mean, out=x, casting="unsafe")
        np.divide(x, std, out=x)
        np.clip(x, -10.0, 10.0, out=x)
        h = x
        for (w, b), y in zip(layers, bufs, strict=True):
            np.dot(h, w, out=y)
            y += b
            np.tanh(y, out=y)
            h = y
        a = (h + 1.0) * half + low
        return np.clip(a, low, high, out=a)

    return act


def _c_policy(policy: Policy, work: str) -> Callable[[np.ndarray], np.ndarray]:
    from metactl.deploy.c_export import export_c

    info = export_c(policy, os.path.join(work, "c"))
    so = os.path.join(work, "policy.so")
    subprocess.run(["gcc", "-std=c99", "-O2", "-fPIC", "-shared", "-o", so, info["source"], "-lm"], check=True)
    fn = ctypes.CDLL(so).metactl_policy
    f32 = ctypes.POINTER(ctypes.c_float)
    fn.argtypes = [f32, f32]
    obs_buf, act_buf = np.zeros(17, np.float32), np.zeros(6, np.float32)
    obs_p, act_p = obs_buf.ctypes.data_as(f32), act_buf.ctypes.data_as(f32)

    def act(obs: np.ndarray) -> np.ndarray:
        obs_buf[:] = obs
        fn(obs_p, act_p)
        return act_buf.astype(np.float64)

    return act
