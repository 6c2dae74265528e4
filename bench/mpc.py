"""``metactl bench mpc``: the robot's adapt + plan time per control step, reference vs our default.

Reference configuration (Nagabandi et al., ICLR 2019, reference code): a 3x512 ReLU model and
random shooting with 500 candidates x horizon 10. Ours: the default of ``train/mb_config.py``
(smaller model, warm-started MPPI with fewer samples). Both run as on the robot — the ONNX graphs
of a model bundle, the numpy planner, one core (CPU affinity pinned, one onnxruntime thread) —
inside a real simulated episode. The planner's achieved GFLOP/s is set against a same-run GEMM
(one onnxruntime MatMul of the same shapes).

With ``run`` (a finished ``metactl train grbal|rebal|mb`` output), both models are refit on the data
that run collected, with its loss and the same number of gradient steps (``refit_steps``) — the
reference size and our default size — so the comparison is of configurations, not of training
budgets; both are then scored on the held-out test tasks: ``return_default_vs_reference`` =
default / reference (and ``return_gap_vs_reference``, which reads for either sign).
Without it both models have random weights and only the timings are measured.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

from metactl.report import format_table
from metactl.summary import write_summary

REFERENCE_HIDDEN = (512, 512, 512)
REFERENCE_PLANNER = {"name": "random_shooting", "samples": 500, "horizon": 10}


def bench_mpc(
    out_dir: str,
    *,
    run: str | None = None,
    family: str = "halfcheetah_disabled_joint",
    steps: int = 200,
    refit_steps: int = 3000,
    eval_steps: int = 0,
    episodes: int = 1,
) -> dict[str, Any]:
    """Measure ``steps`` control steps per configuration; score returns when ``run`` is given (see module doc)."""
    os.makedirs(out_dir, exist_ok=True)
    affinity = _pin_one_core()
    models = _models(out_dir, run, family, refit_steps)
    configs = {"reference": (models["reference"], REFERENCE_PLANNER), "default": (models["default"], None)}
    rows, results = [], {}
    for name, (model_path, planner) in configs.items():
        timing = _time_steps(model_path, planner, os.path.join(out_dir, f"bundle_{name}"), steps)
        results[name] = timing
        rows.append((name, timing["model"], timing["planner"], f"{timing['step_ms_p50']:.2f}",
                     f"{timing['step_ms_p99']:.2f}", f"{timing['adapt_ms_p50']:.2f}", f"{timing['plan_gflops']:.1f}",
                     f"{timing['gemm_gflops']:.1f}"))  # fmt: skip
    summary: dict[str, Any] = {
        "step_ms_reference": results["reference"]["step_ms_p50"],
        "step_ms_default": results["default"]["step_ms_p50"],
        "speedup_default_vs_reference": results["reference"]["step_ms_p50"] / results["default"]["step_ms_p50"],
        "return_default_vs_reference": None,
        "cpu_affinity": affinity,
        "configs": results,
        "run": os.path.abspath(run) if run else None,
    }
    print(format_table("metactl bench mpc: adapt + plan per control step, one core (ONNX graphs + numpy planner)",
                       ("config", "model", "planner", "p50 ms", "p99 ms", "adapt ms", "plan GFLOP/s", "GEMM GFLOP/s"),
                       rows))  # fmt: skip
    if run:
        summary |= _returns(models, run, eval_steps, episodes)
        ret_rows = [(k, f"{summary['returns'][k]:.1f}") for k in ("reference", "default")]
        ret_rows.append(("default / reference", f"{summary['return_default_vs_reference']:.3f}"))
        print(format_table(f"held-out return ({summary['heldout_family']}, mean over test tasks)",
                           ("config", "return"), ret_rows))  # fmt: skip
    write_summary(out_dir, summary)
    return summary


def _pin_one_core() -> list[int] | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return [core]


def _models(out_dir: str, run: str | None, family: str, refit_steps: int) -> dict[str, str]:
    """Model files for both configurations: both sizes refit on the run's data, or random weights of both."""
    from metactl.train.mb_config import MBConfig

    if run is not None:
        from metactl.train.mb_train import refit

        with open(os.path.join(run, "config.json")) as f:
            hidden = tuple(json.load(f)["hidden"])
        paths = {}
        for name, size in (("reference", REFERENCE_HIDDEN), ("default", hidden)):
            paths[name] = os.path.join(out_dir, f"{name}_model.npz")
            t0 = time.perf_counter()
            refit(run, paths[name], hidden=size, train_steps=refit_steps)
            print(f"bench mpc: refit the {name} model ({'x'.join(map(str, size))}) on {run}'s data, "
                  f"{refit_steps} steps, in {time.perf_counter() - t0:.0f} s")  # fmt: skip
        return paths
    return {
        "default": _random_model(os.path.join(out_dir, "default_model.npz"), MBConfig(family=family)),
        "reference": _random_model(
            os.path.join(out_dir, "reference_model.npz"), MBConfig(family=family, hidden=REFERENCE_HIDDEN)
        ),
    }


def _random_model(path: str, config: Any) -> str:
    import torch

    from metactl.controllers.dynamics import DynamicsStats
    from metactl.controllers.serialization import save_dynamics_model
    from metactl.sim import make_family
    from metactl.train import dynamics_model as dm
    from metactl.train.mb_train import model_extra, model_spec

    fam = make_family(config.family)
    spec = model_spec(config, fam)
    params = dm.to_numpy(dm.init_params(spec, torch.Generator().manual_seed(0)))
    stats = DynamicsStats.identity(spec.obs_dim, spec.act_dim)
    save_dynamics_model(path, spec, params, stats, model_extra(config, fam, fam.horizon))
    return path


def _time_steps(model_path: str, planner: dict[str, Any] | None, bundle_dir: str, steps: int) -> dict[str, Any]:
    """Adapt + plan time of each control step of one simulated episode, driven by the ONNX controller."""
    from metactl.deploy.model_bundle import ModelBundle
    from metactl.deploy.model_export import export_model_bundle
    from metactl.sim import make_family

    export_model_bundle(model_path, bundle_dir, planner)
    bundle = ModelBundle.load(bundle_dir)
    meta = bundle.metadata
    fam = make_family(meta["family"])
    batch = fam.make_batch([fam.test_tasks()[0]])
    ctrl = bundle.controller(seed=0)
    obs = batch.reset([0])[0]
    ctrl.reset()
    step_ms, adapt_ms, plan_ms = [], [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        a = ctrl.act(obs, True)
        step_ms.append(1e3 * (time.perf_counter() - t0))
        adapt_ms.append(1e3 * ctrl.mpc.adapt_s)
        plan_ms.append(1e3 * ctrl.mpc.plan_s)
        ctrl.applied(a)
        obs = batch.step(a[None])[0][0]
    warm = slice(min(10, steps // 10), None)  # the first steps fill the window and warm the caches
    p = meta["planner"]
    flops = bundle.spec.mlp_flops(p["samples"]) * p["horizon"]
    plan_s = float(np.median(plan_ms[warm])) / 1e3
    width = bundle.spec.hidden[0]
    model = "x".join(str(h) for h in bundle.spec.hidden)
    return {
        "model": model + (f" + LSTM {bundle.spec.rnn_hidden}" if bundle.spec.rnn_hidden else ""),
        "planner": f"{p['name']} {p['samples']}x{p['horizon']}",
        "step_ms_p50": float(np.median(step_ms[warm])),
        "step_ms_p99": float(np.percentile(step_ms[warm], 99)),
        "adapt_ms_p50": float(np.median(adapt_ms[warm])),
        "plan_ms_p50": float(np.median(plan_ms[warm])),
        "plan_gflops": flops / plan_s / 1e9,
        "gemm_gflops": _gemm_gflops(p["samples"], width, width),
        "steps": steps,
    }  # fmt: skip


def _gemm_gflops(rows: int, k: int, n: int, repeats: int = 200) -> float:
    """GFLOP/s of one single-threaded onnxruntime MatMul [rows, k] x [k, n]: the ceiling the planner's layers see."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from metactl.deploy.graphs import session_options

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((k, n)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])], initializer=[w],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((rows, k)).astype(np.float32)
    for _ in range(10):
        sess.run(None, {"x": x})
    t0 = time.perf_counter()
    for _ in range(repeats):
        sess.run(None, {"x": x})
    return 2.0 * rows * k * n * repeats / (time.perf_counter() - t0) / 1e9


def _returns(models: dict[str, str], run: str, eval_steps: int, episodes: int) -> dict[str, Any]:
    """Held-out returns of both configurations (torch path, the same controller code as the robot's)."""
    from metactl.controllers.serialization import load_dynamics_model, load_inner_params
    from metactl.sim import make_family
    from metactl.train.mb_eval import heldout_returns
    from metactl.train.torch_online import MODES, Adaptation

    out: dict[str, Any] = {}
    per_task = {}
    for name, path in models.items():
        spec, params, stats, extra = load_dynamics_model(path)
        fam = make_family(extra["family"])
        planner = REFERENCE_PLANNER if name == "reference" else extra["planner"]
        mode = extra["method"] if extra["method"] in MODES else "mb"
        with open(os.path.join(run, "config.json")) as f:
            seed = int(json.load(f)["seed"])
        record, inner = extra.get("adaptation"), load_inner_params(path)
        adaptation = Adaptation.from_record(record, inner, float(extra["inner_lr"])) if mode == "grbal" else None
        per_task[name] = heldout_returns(
            fam, spec, params, stats, mode, planner, window=int(extra["window"]), lr=float(extra["inner_lr"]),
            steps=eval_steps or fam.horizon, seed=seed, episodes=episodes, hold=int(extra.get("decision_steps", 1)),
            adaptation=adaptation,
        )  # fmt: skip
        out["heldout_family"] = extra["family"]
    returns = {k: float(np.mean(list(v.values()))) for k, v in per_task.items()}
    out["returns"] = returns
    out["returns_per_task"] = per_task
    out["return_default_vs_reference"] = returns["default"] / returns["reference"] if returns["reference"] else None
    # The ratio reads as intended only for positive returns; the gap relative to |reference| reads for any sign.
    out["return_gap_vs_reference"] = (returns["reference"] - returns["default"]) / max(abs(returns["reference"]), 1e-9)
    return out
