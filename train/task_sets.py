"""The task sets held-out tables evaluate on, their labels, and the standard error they report (torch-free).

Shared by the model-based table (``train.heldout_table``) and ES-MAML's (``train.es_table``); the protocol that
keeps test tasks out of every choice is ``docs/model_selection.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metactl.sim.tasks import Task

VALIDATION_KEY, VALIDATION_TASKS = 4_242, 5
"""Validation tasks: this many training-distribution tasks drawn with this fixed key (``docs/model_selection.md``)."""
CONFIRMATION_KEY, CONFIRMATION_TASKS = 4_243, 10
"""Confirmation tasks: this many training-distribution tasks drawn with another fixed key, none a validation task."""


def task_label(task: Task) -> str:
    """A short name for a held-out task in tables and ``summary.json``."""
    d = task.to_dict()
    d.pop("type")
    if d.get("name"):
        return str(d["name"])
    return ",".join(f"{k}={v}" for k, v in d.items() if k != "mass_scale" or v != 1.0)


def task_set(family: Any, tasks: str) -> list[Any]:
    """'test': the held-out test tasks; 'change': the mid-episode change tests; 'validation': training-distribution
    tasks for choosing hyperparameters (never the test tasks); 'confirmation': fresh training-distribution tasks,
    disjoint from the validation ones, to confirm once a choice that validation left within its noise."""
    if tasks == "test":
        return family.test_tasks()
    if tasks == "change":
        if not hasattr(family, "change_tests"):
            raise ValueError(f"family {family.name} has no mid-episode change tests")
        return family.change_tests()
    if tasks == "validation":  # up to VALIDATION_TASKS distinct ones (every training task of a discrete family)
        drawn = family.sample_tasks(np.random.default_rng(VALIDATION_KEY), 10 * VALIDATION_TASKS)
        return list(dict.fromkeys(drawn))[:VALIDATION_TASKS]
    if tasks == "confirmation":  # another key's draw, without the validation (and test) tasks
        seen = {*task_set(family, "validation"), *family.test_tasks()}
        drawn = family.sample_tasks(np.random.default_rng(CONFIRMATION_KEY), 10 * CONFIRMATION_TASKS)
        fresh = [t for t in dict.fromkeys(drawn) if t not in seen][:CONFIRMATION_TASKS]
        if not fresh:
            raise ValueError(f"family {family.name} has no training tasks beyond its validation ones to confirm on")
        return fresh
    raise ValueError(f"tasks must be 'test', 'change', 'validation' or 'confirmation', got {tasks!r}")


def standard_error(values: list[float]) -> float:
    """Standard error of the mean of ``values`` (sample std / sqrt(n)); NaN for fewer than two."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def paired_difference(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int]:
    """Mean and standard error over seeds of ``a[seed] - b[seed]`` (the same seed: the same episodes), on the seeds
    both have, and how many; NaNs when none."""
    diff = [a[s] - b[s] for s in sorted(set(a) & set(b))]
    return (float(np.mean(diff)) if diff else float("nan")), standard_error(diff), len(diff)
