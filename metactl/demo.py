"""The main job: meta-train, export, then adapt online on held-out tasks through the robot runtime.

Trains ES-MAML and the non-meta baseline on the same budget, exports both to
ONNX bundles, and runs each bundle on every held-out test task of the family
through ``deploy.run_online`` against the simulated robot of
``hardware_configs/sim_<family>.toml`` (each adaptation query is one robot
episode). Reports held-out return before adaptation, after adaptation, and the
baseline after the same adaptation.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from metactl.hardware_configs import config_path as shipped_config
from metactl.report import format_table
from metactl.summary import write_summary

DEMO_BUDGET: dict[str, dict[str, Any]] = {}
"""Per-family overrides of the training preset for the demo (must fit 10 minutes on 2 cores)."""

REPEATS = {"four_corners": 4, "multi_goal_circle": 4}
"""Independent online-adaptation runs per held-out task (adaptation is random: average them)."""

QUICK_BUDGET = {"iterations": 2, "directions": 2, "tasks_per_iteration": 1, "eval_every": 1, "eval_repeats": 1}


def run_demo(
    out_dir: str,
    family: str = "four_corners",
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    video: bool = False,
) -> dict[str, Any]:
    """Train, export and adapt on every held-out task (see the module docstring); ``video`` writes MP4s of the first
    run per task, before and after adaptation, into its robot folder."""
    from metactl import deploy, train
    from metactl.deploy.export import export_bundle

    t0 = time.perf_counter()
    _test_tasks(family)  # an unknown family fails here, naming the known ones
    config_path = shipped_config(f"sim_{family}")
    hw = deploy.load_hardware_config(config_path)
    overrides = QUICK_BUDGET if quick else DEMO_BUDGET.get(family, {})
    results: dict[str, dict[str, Any]] = {}
    for label, meta in (("es_maml", True), ("baseline", False)):
        run_dir = os.path.join(out_dir, f"train_{label}")
        cfg = train.config_for(family, meta=meta, seed=seed, **overrides)
        trained = train.train(cfg, run_dir, progress=progress, workers=workers, backend=backend, address=address)
        bundle = export_bundle(trained.policy_path, os.path.join(out_dir, f"bundle_{label}"))
        n_tasks, repeats = len(_test_tasks(family)), 1 if quick else REPEATS.get(family, 2)
        reports = [
            [
                _robot_run(
                    bundle,
                    hw,
                    i,
                    seed * 1000 + r,
                    os.path.join(out_dir, f"robot_{label}", f"task_{i}_run_{r}"),
                    video and r == 0,
                )
                for r in range(repeats)
            ]
            for i in range(n_tasks)
        ]
        results[label] = {
            "bundle": os.path.abspath(bundle),
            "videos": {f"task_{i}": runs[0]["videos"] for i, runs in enumerate(reports) if "videos" in runs[0]},
            "pre": [float(np.mean([r["pre_adaptation_return"] for r in runs])) for runs in reports],
            "post": [float(np.mean([r["post_adaptation_return"] for r in runs])) for runs in reports],
            "episodes": sum(r["episodes"] for runs in reports for r in runs),
            "runs_per_task": repeats,
            "train_summary": trained.summary,
        }
    summary = _summarize(family, seed, results, time.perf_counter() - t0)
    _plot(results, os.path.join(out_dir, "demo_returns.png"), family)
    write_summary(out_dir, summary)
    _print(summary, results)
    return summary


def _robot_run(bundle: str, hw: Any, task: int, seed: int, out: str, video: bool) -> dict[str, Any]:
    """One online-adaptation run through the runtime on the simulated robot; its summary."""
    from metactl import deploy

    report = deploy.run_online(bundle, hw, task=task, seed=seed, out_dir=out, record=video)
    summary = report.summary()
    if video:
        from metactl.videos import report_videos

        summary["videos"] = report_videos(report, hw, out)
    return summary


def _test_tasks(family: str) -> list[Any]:
    from metactl import sim

    return sim.make_family(family).test_tasks()


def _summarize(family: str, seed: int, results: dict[str, dict[str, Any]], wall_s: float) -> dict[str, Any]:
    meta, base = results["es_maml"], results["baseline"]
    return {
        "family": family,
        "seed": seed,
        "pre_adaptation_return": float(np.mean(meta["pre"])),
        "post_adaptation_return": float(np.mean(meta["post"])),
        "baseline_pre_adaptation_return": float(np.mean(base["pre"])),
        "baseline_post_adaptation_return": float(np.mean(base["post"])),
        "per_task": {
            "pre_adaptation_return": meta["pre"],
            "post_adaptation_return": meta["post"],
            "baseline_pre_adaptation_return": base["pre"],
            "baseline_post_adaptation_return": base["post"],
        },
        "bundle": meta["bundle"],
        "videos": {label: r["videos"] for label, r in results.items() if r["videos"]},
        "baseline_bundle": base["bundle"],
        "robot_episodes": meta["episodes"] + base["episodes"],
        "runs_per_task": meta["runs_per_task"],
        "train_wall_s": {k: v["train_summary"]["wall_s"] for k, v in results.items()},
        "wall_s": round(wall_s, 1),
    }


def _print(summary: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    rows = []
    for i, _ in enumerate(results["es_maml"]["pre"]):
        rows.append(
            (
                f"test task {i}",
                results["es_maml"]["pre"][i],
                results["es_maml"]["post"][i],
                results["baseline"]["pre"][i],
                results["baseline"]["post"][i],
            )
        )
    rows.append(
        (
            "mean",
            summary["pre_adaptation_return"],
            summary["post_adaptation_return"],
            summary["baseline_pre_adaptation_return"],
            summary["baseline_post_adaptation_return"],
        )
    )
    print(
        format_table(
            f"metactl demo: {summary['family']} held-out tasks, online adaptation through the runtime "
            f"({summary['wall_s']} s)",
            ("task", "ES-MAML before", "ES-MAML after", "baseline before", "baseline after"),
            rows,
        )
    )
    print(f"bundle: {summary['bundle']}")


def _plot(results: dict[str, dict[str, Any]], path: str, family: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results["es_maml"]["pre"])
    x = np.arange(n + 1)
    series = [
        ("ES-MAML before", results["es_maml"]["pre"]),
        ("ES-MAML after", results["es_maml"]["post"]),
        ("baseline before", results["baseline"]["pre"]),
        ("baseline after", results["baseline"]["post"]),
    ]
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, (label, values) in enumerate(series):
        ax.bar(x + (k - 1.5) * 0.2, [*values, float(np.mean(values))], width=0.2, label=label)
    ax.set_xticks(x, [f"task {i}" for i in range(n)] + ["mean"])
    ax.set_ylabel("episode return")
    ax.set_title(f"{family}: held-out return before/after online adaptation")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
