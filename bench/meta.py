"""``metactl bench meta``: the meta-learners side by side on the same models, with their costs.

Two supervised problems (``bench.meta_sinusoid``: MAML's sinusoid regression; ``bench.meta_cheetah``: held-out
HalfCheetah disabled-joint dynamics), and on each, for every row (meta-learner x inner step): the test loss
after 0, 1 and 10 adaptation steps with the row's own inner step, next to a pretrained non-meta baseline
fine-tuned by SGD; wall time and peak memory of one meta-step. Mean +- standard error over independently
trained seeds (the standard error of the per-seed means over the fixed test tasks); the standard error over
test tasks is in ``summary.json`` too. A difference counts only if it exceeds twice the combined standard error;
anything smaller is reported as "no difference".

Hyperparameters each row adds to MAML (``GRIDS``: iMAML's lambda and inner step size, Evo-MAML's sigma and
temperature, the LSTM's output scale; the baseline's fine-tuning step size) are chosen on validation tasks by a
model of a separate seed, never on test tasks: the criterion is the validation loss after the number of inner
steps the row trains with (the baseline's: after 1 and after 10 steps, one choice per column).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from metactl.bench import meta_cheetah as cheetah
from metactl.bench import meta_sinusoid as sinusoid
from metactl.bench.meta_budget import Budget
from metactl.bench.meta_memory import peak_growth_mb
from metactl.bench.meta_train import Problem, Trained, evaluate_finetuned, evaluate_learned, meta_train, pretrain
from metactl.report import format_table
from metactl.summary import write_summary
from metactl.train.inner_steps import Data, make_inner_step
from metactl.train.meta_settings import MetaSettings

log = logging.getLogger(__name__)

Row = tuple[str, str]
ROWS: tuple[Row, ...] = (("maml", "sgd"), ("fomaml", "sgd"), ("imaml", "sgd"), ("evo_maml", "sgd"),
                         ("maml", "meta_sgd"), ("maml", "lstm"))  # fmt: skip
"""Every meta-learner with SGD and every inner step with exact MAML. The other supported combinations (first-order
or Evo-MAML training of Meta-SGD and of the LSTM) are tested but not benchmarked by default: the LSTM rows cost
~100x MAML's meta-step (Evo-MAML's P copies multiply that by P: 2.5 s per sinusoid meta-step)."""
STEPS = (0, 1, 10)
SELECT_SEED = 1000
"""Seed of the models that choose hyperparameters (the reported seeds are 0, 1, ...)."""
BASELINE_LRS = (0.001, 0.01, 0.1)
IMAML_GRID: dict[str, Sequence[Any]] = {"inner_steps": (10,), "imaml_cg_steps": (10,), "inner_lr": (0.01, 0.03),
                                         "imaml_lambda": (1.0,)}  # fmt: skip
"""iMAML needs its proximal inner problem solved: with 5 steps of 0.01 on the sinusoid its implicit gradient was
wrong enough to leave the adapted loss above the unadapted one (1000 meta-steps, validation: 14.8 vs 7.1); 10
steps with 10 CG iterations trained stably."""
GRIDS: dict[str, dict[str, dict[str, Sequence[Any]]]] = {
    "sinusoid": {
        "imaml": IMAML_GRID,
        "evo_maml": {"evo_sigma": (0.003, 0.03), "evo_temperature": (0.01, 0.1)},
        "lstm": {"lstm_scale": (0.01, 0.1)},
    },
    "cheetah": {
        "imaml": IMAML_GRID,
        "evo_maml": {"evo_sigma": (0.003, 0.03), "evo_temperature": (0.001, 0.01)},
        "lstm": {"lstm_scale": (0.01, 0.1)},
    },
}
"""Per problem, per meta-learner or inner step: the values tried on validation tasks. Everything else is MAML's
(sinusoid: Finn et al.'s inner step size 0.01, Adam 1e-3, 25 tasks per meta-batch) or GrBAL's (inner step 0.01,
M = K = 16)."""


@dataclasses.dataclass
class Setup:
    """One benchmark: where hyperparameters are chosen (select_problem, val) and where rows are scored."""

    name: str
    select_problem: Problem
    val: tuple[Data, Data]
    problem: Problem
    test: tuple[Data, Data]
    batch: int
    steps: int
    base: MetaSettings
    grids: dict[str, dict[str, Sequence[Any]]]
    sizes: Sequence[int]
    shapes: tuple[int, int]
    """(support, query) points per task in a meta-batch (memory probe)."""
    extra: Callable[[Trained, MetaSettings], dict[str, float]] | None = None
    chosen: dict[tuple[str, ...], tuple[dict[str, Any], list[dict[str, Any]]]] = dataclasses.field(default_factory=dict)


def _stats(per_seed: list[float]) -> tuple[float, float]:
    """Mean and standard error; a seed whose loss diverged (inf) makes the mean inf: it is reported, not hidden."""
    a = np.asarray(per_seed, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return float("inf"), float("nan")
    return float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")


def _mean(losses: np.ndarray) -> float:
    """Mean loss over tasks; inf if any task's adaptation diverged (non-finite loss)."""
    return float(losses.mean()) if np.all(np.isfinite(losses)) else float("inf")


def _candidates(setup: Setup, row: Row) -> list[MetaSettings]:
    grid: dict[str, Sequence[Any]] = {}
    for key in row:
        grid |= setup.grids.get(key, {})
    base = dataclasses.replace(setup.base, meta_learner=row[0], inner_step=row[1], inner_steps=0)
    names = list(grid)
    return [dataclasses.replace(base, **dict(zip(names, v, strict=True))) for v in itertools.product(*grid.values())]


def _select(setup: Setup, row: Row, budget: Budget) -> tuple[MetaSettings, list[dict[str, Any]]]:
    """The row's candidate with the lowest validation loss. A choice that depends only on the inner step (the
    LSTM's scale) is made once, with the first row that has it, and reused (``setup.chosen``)."""
    candidates = _candidates(setup, row)
    if len(candidates) == 1:
        return candidates[0], []
    tuned = tuple(k for k in row if k in setup.grids)
    if tuned in setup.chosen:
        values, tried = setup.chosen[tuned]
        return dataclasses.replace(candidates[0], **values), tried
    tried = []
    for settings in candidates:
        trained = meta_train(setup.select_problem, settings, steps=setup.steps, batch=setup.batch,
                             lr=budget.outer_lr, seed=SELECT_SEED)  # fmt: skip
        k = settings.inner_steps
        score = _mean(evaluate_learned(setup.select_problem, trained, settings, setup.val, [k])[k])
        tried.append({"settings": _changed(settings, setup.base), "val_loss": score, "after_steps": k})
    scores = [t["val_loss"] if np.isfinite(t["val_loss"]) else np.inf for t in tried]
    best = candidates[int(np.argmin(scores))]
    setup.chosen[tuned] = ({k: getattr(best, k) for k in itertools.chain(*(setup.grids[t] for t in tuned))}, tried)
    return best, tried


def _changed(settings: MetaSettings, base: MetaSettings) -> dict[str, Any]:
    return {k: v for k, v in settings.to_dict().items() if v != getattr(base, k) or k in ("meta_learner", "inner_step")}


def run_row(setup: Setup, row: Row, budget: Budget) -> dict[str, Any]:
    """Choose the row's hyperparameters on validation, then train ``budget.seeds`` models and score them on test."""
    t0 = time.perf_counter()
    settings, tried = _select(setup, row, budget)
    per_seed: dict[str, list[float]] = {}
    task_losses, times, skipped = {k: [] for k in STEPS}, [], []
    for seed in range(budget.seeds):
        trained = meta_train(setup.problem, settings, steps=setup.steps, batch=setup.batch, lr=budget.outer_lr,
                             seed=seed)  # fmt: skip
        skipped.append(trained.skipped)
        losses = evaluate_learned(setup.problem, trained, settings, setup.test, STEPS)
        for k in STEPS:
            per_seed.setdefault(f"after_{k}", []).append(_mean(losses[k]))
            task_losses[k].append(losses[k])
        for key, value in (setup.extra(trained, settings) if setup.extra else {}).items():
            per_seed.setdefault(key, []).append(value)
        times.append(trained.step_ms)
    out = _summarize(per_seed, task_losses)
    out |= {"meta_learner": row[0], "inner_step": row[1], "settings": _changed(settings, setup.base),
            "selection": tried, "train_step_ms": float(np.median(times)), "peak_mb": _memory(setup, settings, budget),
            "skipped_meta_steps": skipped,
            "wall_s": time.perf_counter() - t0}  # fmt: skip
    log.info("bench meta %s %s/%s: %s", setup.name, *row, {k: round(v, 4) for k, v in out["mean"].items()})
    return out


def _summarize(per_seed: dict[str, list[float]], task_losses: dict[int, list[np.ndarray]]) -> dict[str, Any]:
    stats = {k: _stats(v) for k, v in per_seed.items()}
    pooled = {k: np.concatenate(v) for k, v in task_losses.items() if v}
    task_se = {f"after_{k}": float(x.std(ddof=1) / np.sqrt(len(x))) for k, x in pooled.items()}
    diverged = {f"after_{k}": int((~np.isfinite(x)).sum()) for k, x in pooled.items()}
    return {"mean": {k: s[0] for k, s in stats.items()}, "se": {k: s[1] for k, s in stats.items()},
            "per_seed": per_seed, "task_se": task_se, "diverged_tasks": diverged}  # fmt: skip


def _memory(setup: Setup, settings: MetaSettings, budget: Budget) -> float | None:
    if not budget.memory:
        return None
    spec = {"sizes": list(setup.sizes), "tasks": setup.batch, "support": setup.shapes[0], "query": setup.shapes[1],
            "settings": [settings.to_dict()]}  # fmt: skip
    return peak_growth_mb(spec)[0]


def run_baseline(setup: Setup, budget: Budget) -> dict[str, Any]:
    """The pretrained non-meta model, fine-tuned by SGD with the step size chosen on validation per column."""
    t0 = time.perf_counter()
    chooser = pretrain(setup.select_problem, steps=setup.steps, batch=setup.batch, lr=budget.outer_lr, seed=SELECT_SEED)
    val = {lr: evaluate_finetuned(setup.select_problem, chooser, lr, setup.val, STEPS) for lr in BASELINE_LRS}
    lr_for = {k: min(BASELINE_LRS, key=lambda lr: _mean(val[lr][k])) for k in STEPS}
    per_seed: dict[str, list[float]] = {}
    task_losses, times = {k: [] for k in STEPS}, []
    for seed in range(budget.seeds):
        trained = pretrain(setup.problem, steps=setup.steps, batch=setup.batch, lr=budget.outer_lr, seed=seed)
        for k in STEPS:
            losses = evaluate_finetuned(setup.problem, trained, lr_for[k], setup.test, [k])[k]
            per_seed.setdefault(f"after_{k}", []).append(_mean(losses))
            task_losses[k].append(losses)
        settings = dataclasses.replace(setup.base, inner_lr=lr_for[1])
        for key, value in (setup.extra(trained, settings) if setup.extra else {}).items():
            per_seed.setdefault(key, []).append(value)
        times.append(trained.step_ms)
    out = _summarize(per_seed, task_losses)
    out |= {"meta_learner": "pretrained", "inner_step": "sgd", "settings": {"finetune_lr": lr_for},
            "selection": [{"finetune_lr": lr, **{f"val_after_{k}": _mean(v[k]) for k in STEPS}}
                          for lr, v in val.items()],
            "train_step_ms": float(np.median(times)), "peak_mb": None, "wall_s": time.perf_counter() - t0}  # fmt: skip
    return out


def time_rows(setup: Setup, rows: dict[str, MetaSettings | None], rounds: int = 3) -> dict[str, float]:
    """Median wall time of one meta-step per row [ms] (None: the baseline's plain gradient step), measured in
    interleaved rounds of 12 steps (the last 2 counted) so that the load of a shared machine hits every row alike;
    the medians of training time are kept as ``train_step_ms`` but drift with the load over a long run."""
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, settings in rows.items():
            kw = {"steps": 12, "batch": setup.batch, "lr": 1e-3, "seed": SELECT_SEED}
            trained = pretrain(setup.problem, **kw) if settings is None else meta_train(setup.problem, settings, **kw)
            times[name].append(trained.step_ms)
    return {name: float(np.median(t)) for name, t in times.items()}


def compare(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
    """'better' / 'worse' (lower / higher loss by more than twice the combined standard error) or 'no difference'."""
    x, y = a["mean"][key], b["mean"][key]
    if not (np.isfinite(x) and np.isfinite(y)):
        return "diverged" if not np.isfinite(x) and np.isfinite(y) else "baseline diverged" if np.isfinite(x) else "-"
    noise = 2 * np.hypot(a["se"][key], b["se"][key])
    if not np.isfinite(noise) or abs(x - y) <= noise:
        return "no difference"
    return "better" if x < y else "worse"


def run_setup(setup: Setup, rows: Sequence[Row], budget: Budget) -> dict[str, Any]:
    t0 = time.perf_counter()
    baseline = run_baseline(setup, budget)
    results = {f"{m}/{i}": run_row(setup, (m, i), budget) for m, i in rows}
    chosen = {name: MetaSettings(**{**setup.base.to_dict(), **res["settings"]}) for name, res in results.items()}
    for name, ms in time_rows(setup, {"baseline": None, **chosen}).items():
        (baseline if name == "baseline" else results[name])["step_ms"] = ms
    reference = results.get("maml/sgd")
    for res in results.values():
        res["vs_baseline"] = {k: compare(res, baseline, f"after_{k}") for k in (1, 10)}
        if reference is not None:
            res["vs_maml_sgd"] = {k: compare(res, reference, f"after_{k}") for k in (1, 10)}
    return {"rows": results, "baseline": baseline, "wall_s": time.perf_counter() - t0, "meta_steps": setup.steps,
            "meta_batch": setup.batch, "base_settings": setup.base.to_dict()}  # fmt: skip


def sinusoid_setup(budget: Budget) -> Setup:
    problem = sinusoid.problem()
    test, val = sinusoid.fixed_tasks("test", budget.test_tasks), sinusoid.fixed_tasks("validation", budget.val_tasks)
    return Setup("sinusoid", problem, val, problem, test, budget.sinusoid_batch, budget.sinusoid_steps,
                 MetaSettings(inner_lr=0.01), GRIDS["sinusoid"], sinusoid.SIZES, (sinusoid.K, sinusoid.K))  # fmt: skip


def cheetah_setup(budget: Budget, seed: int = 0) -> Setup:
    """Train data of joints 1-5 (selection: 1-4), validation windows of joint 5, test windows of joint 0."""
    n, t = budget.cheetah_episodes, budget.cheetah_episode_steps
    train = cheetah.collect(range(6), n, t, seed)
    held = cheetah.collect((0, 5), n, t, seed + 1)  # evaluation episodes of their own seeds
    select_stats, stats = (
        cheetah.stats_of([train[j] for j in (1, 2, 3, 4)]),
        cheetah.stats_of([train[j] for j in range(1, 6)]),
    )
    select = cheetah.WindowProblem(cheetah.merged([train[j] for j in (1, 2, 3, 4)]), select_stats)
    final = cheetah.WindowProblem(cheetah.merged([train[j] for j in range(1, 6)]), stats)
    val = cheetah.fixed_windows(cheetah.WindowProblem(held[5], select_stats), budget.val_tasks, seed + 2)
    test_problem = cheetah.WindowProblem(held[0], stats)
    test = cheetah.fixed_windows(test_problem, budget.test_tasks, seed + 3)
    spec = final.spec

    def rollout(trained: Trained, settings: MetaSettings) -> dict[str, float]:
        inner = make_inner_step(settings)
        err = cheetah.rollout_error(final, trained.theta, inner, trained.phi, *test, settings.proximal)
        return {"rollout_after_1": float(err.mean())}

    sizes = (spec.obs_dim + spec.act_dim, *spec.hidden, spec.obs_dim)
    return Setup("cheetah", select.problem(), val, final.problem(), test, budget.cheetah_batch, budget.cheetah_steps,
                 MetaSettings(inner_lr=0.01), GRIDS["cheetah"], sizes, (final.m, final.k), rollout)  # fmt: skip


def _fmt(res: dict[str, Any], key: str, digits: int = 3) -> str:
    if key not in res["mean"]:
        return "-"
    if not np.isfinite(res["mean"][key]):
        return "diverged"
    return f"{res['mean'][key]:.{digits}f} ± {res['se'][key]:.{digits}f}"


def table(name: str, result: dict[str, Any], title: str) -> str:
    rows = []
    extra = "rollout_after_1" in result["baseline"]["mean"]
    maml_ms = result["rows"].get("maml/sgd", {}).get("step_ms")
    for label, res in [("pretrained + SGD", result["baseline"]), *result["rows"].items()]:
        cells = [label, *(_fmt(res, f"after_{k}") for k in STEPS)]
        if extra:
            cells.append(_fmt(res, "rollout_after_1"))
        cells += [f"{res['step_ms']:.1f}", f"{res['step_ms'] / maml_ms:.1f}x" if maml_ms else "-"]
        cells.append("-" if res["peak_mb"] is None else f"{res['peak_mb']:.1f}")
        cells.append(" / ".join(res.get("vs_baseline", {}).values()) or "-")
        rows.append(cells)
    headers = ["meta-learner / inner step", "0 steps", "1 step", "10 steps"]
    headers += ["K-step rollout (1 step)"] if extra else []
    headers += ["ms / meta-step", "x MAML", "peak MB", "vs baseline (1 / 10 steps)"]
    return format_table(title, headers, rows)


def plot(summary: dict[str, Any], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("sinusoid", "cheetah") if n in summary]
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 4.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        entries = [("pretrained", summary[name]["baseline"]), *summary[name]["rows"].items()]
        x = np.arange(len(entries))
        for j, k in enumerate((1, 10)):
            means = np.array([r["mean"][f"after_{k}"] for _, r in entries], dtype=float)
            ses = np.nan_to_num(np.array([r["se"][f"after_{k}"] for _, r in entries], dtype=float))
            ok = np.isfinite(means)
            pos = x + (j - 0.5) * 0.38
            ax.bar(pos[ok], means[ok], 0.38, yerr=ses[ok], capsize=3, label=f"after {k} step(s)")
            for p in pos[~ok]:
                ax.text(p, np.nanmin(means[ok]) if ok.any() else 1.0, "diverged", rotation=90, ha="center", fontsize=7)
        ax.set_xticks(x, [n for n, _ in entries], rotation=35, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("test loss (MSE)")
        ax.set_title(f"{name}: mean ± s.e. over seeds")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bench_meta(
    out_dir: str,
    *,
    budget: Budget | None = None,
    rows: Sequence[Row] = ROWS,
    cheetah_rows: Sequence[Row] | None = None,
    problems: Sequence[str] = ("sinusoid", "cheetah"),
) -> dict[str, Any]:
    """Run the benchmark (module docstring), print one table per problem, write ``summary.json`` and
    ``meta_learners.png`` into ``out_dir``; returns the summary. ``cheetah_rows`` defaults to ``rows``."""
    import torch

    torch.set_num_threads(1)
    budget = budget or Budget()
    os.makedirs(out_dir, exist_ok=True)
    summary: dict[str, Any] = {"budget": dataclasses.asdict(budget), "steps": list(STEPS), "grids": GRIDS}
    cheetah_rows = rows if cheetah_rows is None else cheetah_rows
    setups = {"sinusoid": (sinusoid_setup, rows, "MAML sinusoid: test MSE after k steps (K = 10)"),
              "cheetah": (cheetah_setup, cheetah_rows, "HalfCheetah held-out joint 0: normalized-delta MSE on the "
                          "next K = 16 after adapting on M = 16")}  # fmt: skip
    for name in problems:
        make, these, title = setups[name]
        summary[name] = run_setup(make(budget), these, budget)
        print(table(name, summary[name], title))
    summary["plot"] = plot(summary, os.path.join(out_dir, "meta_learners.png"))
    write_summary(out_dir, _finite(summary))
    return summary


def _finite(value: Any) -> Any:
    """A JSON-safe copy: non-finite floats (a diverged row) become None (strict JSON has no NaN or Infinity)."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
