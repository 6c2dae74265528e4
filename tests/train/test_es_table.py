"""ES-MAML's held-out table: every method and reference on the same episodes, ratios from the measured numbers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metactl import train
from metactl.controllers import load_policy
from metactl.sim import make_family
from metactl.train.es_maml import heldout_seeds
from metactl.train.es_table import ALL, TABLE_KEY, evaluate_es_runs
from metactl.train.lockstep import Evaluator
from metactl.train.task_sets import VALIDATION_KEY, task_set

EPISODES = 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_run: dict[str, Any]) -> dict[str, str]:
    """Tiny four_corners runs: ES-MAML and the baseline with seeds 0 and 1, a specialist (seed 0) per test task."""
    root = tmp_path_factory.mktemp("es_table")
    made = {f"es_maml_s{s}": {"seed": s} for s in (0, 1)} | {
        f"baseline_s{s}": {"seed": s, "meta": False} for s in (0, 1)
    }
    made |= {f"specialist_t{k}": {"meta": False, "specialist_task": k} for k in range(4)}
    for name, overrides in made.items():
        train.train(train.config_for("four_corners", **tiny_run, **overrides), str(root / name), progress=False)
    return {name: str(root / name) for name in made}


def test_every_method_and_reference_is_reported_with_ratios_from_the_measured_returns(runs) -> None:
    out = evaluate_es_runs(list(runs.values()), episodes=EPISODES)
    labels = out["tasks"][:-1]
    assert out["tasks"][-1] == ALL and len(labels) == 4 and out["steps"] == 100
    for key in ("es_maml_pre", "es_maml_post", "baseline_pre", "baseline_post", "specialist", "zero_action"):
        assert set(out[key]) == set(out["tasks"]), key
    assert {len(out["per_seed"]["es_maml_post"][t]) for t in labels} == {2}
    assert {len(out["per_seed"]["specialist"][t]) for t in labels} == {1}
    for task in out["tasks"]:
        post, spec, zero = out["es_maml_post"][task], out["specialist"][task], out["zero_action"][task]
        spec_se = out["returns_se"]["specialist"][task]  # NaN for one seed: then the gain need only be > 0
        clear = spec - zero > 0 and not spec - zero <= 2 * spec_se
        expected = (post - zero) / (spec - zero) if clear else math.nan
        assert out["post_adaptation_vs_specialist"][task] == pytest.approx(expected, nan_ok=True)
        se = out["returns_se"]["es_maml_post"][task] / (spec - zero) if clear else math.nan
        assert out["post_adaptation_vs_specialist_se"][task] == pytest.approx(se, nan_ok=True)
        seeds = out["per_seed"]
        diffs = [seeds["es_maml_post"][task][s] - seeds["baseline_post"][task][s] for s in (0, 1)]
        paired = out["post_adaptation_vs_baseline"][task]
        assert paired["return_diff"] == pytest.approx(np.mean(diffs))
        assert paired["se"] == pytest.approx(np.std(diffs, ddof=1) / np.sqrt(2)) and paired["seeds"] == 2
    # ALL is each seed's mean over the tasks
    mean = np.mean([out["per_seed"]["es_maml_pre"][t][1] for t in labels])
    assert out["per_seed"]["es_maml_pre"][ALL][1] == pytest.approx(mean)
    assert out["training_episodes"] == {"es_maml": [72], "baseline": [72], "specialist": [72]}
    # a point on a plane: every episode runs its 100 steps, and there is no distance to report
    assert set(out["episode_length"]["es_maml_post"].values()) == {100.0} and "distance" not in out


def test_a_travelling_robot_reports_distance_along_the_heading_and_episode_length(tmp_path, tiny_run) -> None:
    """Ant forward-backward: besides the return (which holds an alive bonus and a control cost), the distance along
    each task's commanded direction, with its share of the specialist's, and the steps before a fall, by hand."""
    tiny = {**tiny_run, "horizon": 40, "directions": 1, "iterations": 1}
    made = {"es": {"seed": 0}, "spec": {"meta": False, "specialist_task": 1}}
    for name, overrides in made.items():
        train.train(train.config_for("ant_fb", **tiny, **overrides), str(tmp_path / name), progress=False)
    out = evaluate_es_runs([str(tmp_path / name) for name in made], episodes=EPISODES)
    family = make_family("ant_fb")
    seeds = heldout_seeds(TABLE_KEY, 4 * EPISODES)[EPISODES : 2 * EPISODES]
    policy, _ = load_policy(str(tmp_path / "spec" / "policy.npz"))
    task = family.test_tasks()[1]  # backward: the distance is the travel towards -x
    assert task.direction == -1.0
    own = Evaluator(family, policy.spec, policy.normalizer, 40).evaluation_rollouts(
        np.tile(policy.params, (EPISODES, 1)), [task] * EPISODES, seeds
    )
    label = out["tasks"][1]
    assert out["per_seed_distance"]["specialist"][label][0] == pytest.approx(-own.displacement.mean())
    assert out["episode_length"]["specialist"][label] == pytest.approx(own.lengths.mean())
    post, spec, zero = (out["distance"][m][label] for m in ("es_maml_post", "specialist", "zero_action"))
    share = out["es_maml_post_vs_specialist_distance"][label]
    assert share == pytest.approx((post - zero) / (spec - zero) if spec > zero else math.nan, nan_ok=True)
    assert set(out["distance"]) == {"es_maml_pre", "es_maml_post", "specialist", "zero_action"}
    assert all(0 < n <= 40 for n in out["episode_length"]["es_maml_post"].values())


def test_a_specialist_is_measured_on_the_episodes_the_others_have_on_its_task(runs) -> None:
    out = evaluate_es_runs(list(runs.values()), episodes=EPISODES)
    family = make_family("four_corners")
    k = 3
    seeds = heldout_seeds(TABLE_KEY, 4 * EPISODES)[k * EPISODES : (k + 1) * EPISODES]  # task-major, as the table
    policy, _ = load_policy(str(Path(runs[f"specialist_t{k}"]) / "policy.npz"))
    ev = Evaluator(family, policy.spec, policy.normalizer, 100)
    by_hand = ev.evaluate(np.tile(policy.params, (EPISODES, 1)), [family.test_tasks()[k]] * EPISODES, seeds)
    assert out["per_seed"]["specialist"][out["tasks"][k]][0] == pytest.approx(by_hand.mean())


def test_the_table_is_the_same_whatever_order_the_runs_come_in(runs) -> None:
    forward = evaluate_es_runs(list(runs.values()), episodes=EPISODES)
    backward = evaluate_es_runs(list(runs.values())[::-1], episodes=EPISODES)
    assert forward["returns"] == backward["returns"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks": "validation"}, "evaluate them with --tasks test"),
        ({"tasks": "change"}, "--tasks test, validation or confirmation"),
        ({"episodes": 0}, "--episodes must be >= 1"),
    ],
)
def test_bad_requests_name_the_fix(runs, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_es_runs(list(runs.values()), **kwargs)


def test_runs_of_two_families_or_one_seed_twice_are_refused(runs, tiny_run: dict[str, Any], tmp_path) -> None:
    other = str(tmp_path / "circle")
    train.train(train.config_for("multi_goal_circle", **tiny_run), other, progress=False)
    with pytest.raises(ValueError, match="evaluate one family at a time"):
        evaluate_es_runs([runs["es_maml_s0"], other])
    with pytest.raises(ValueError, match="two es_maml runs with seed 0"):
        evaluate_es_runs([runs["es_maml_s0"], runs["es_maml_s0"]])
    with pytest.raises(ValueError, match="pass 'metactl train es' output folders"):
        evaluate_es_runs([str(tmp_path / "missing")])


def test_a_validation_table_has_es_maml_and_the_baseline_on_validation_tasks(runs) -> None:
    out = evaluate_es_runs([runs["es_maml_s0"], runs["baseline_s0"]], episodes=1, tasks="validation")
    test_labels = evaluate_es_runs([runs["es_maml_s0"]], episodes=1)["tasks"]
    assert out["task_set"] == "validation" and not set(out["tasks"][:-1]) & set(test_labels)
    assert "specialist" not in out and "post_adaptation_vs_specialist" not in out
    assert out["post_adaptation_vs_baseline"][ALL]["seeds"] == 1
    confirm = evaluate_es_runs([runs["es_maml_s0"]], episodes=1, tasks="confirmation")
    assert confirm["task_set"] == "confirmation" and len(confirm["tasks"][:-1]) == 10
    assert not set(confirm["tasks"][:-1]) & (set(out["tasks"][:-1]) | set(test_labels))


def test_confirmation_tasks_are_fresh_and_validation_tasks_unchanged() -> None:
    """The confirmation set is another key's draw from the training distribution, none of it a validation or
    test task; adding it left the validation draw as it was (the key's first 50 tasks); a family whose training
    tasks are all validation tasks has none, and says so."""
    fb = make_family("halfcheetah_fb")
    validation, confirmation = task_set(fb, "validation"), task_set(fb, "confirmation")
    assert validation == list(dict.fromkeys(fb.sample_tasks(np.random.default_rng(VALIDATION_KEY), 50)))[:5]
    assert len(confirmation) == len(set(confirmation)) == 10
    assert not set(confirmation) & {*validation, *fb.test_tasks()}
    assert {t.direction for t in confirmation} == {-1.0, 1.0}
    with pytest.raises(ValueError, match="no training tasks beyond its validation ones"):
        task_set(make_family("halfcheetah_disabled_joint"), "confirmation")
