"""The held-out table: every method and reference on the same episodes, returns split into what they are made of."""

from __future__ import annotations

import numpy as np
import pytest

from metactl.train.heldout_table import evaluate_runs
from metactl.train.mb_config import MBConfig
from metactl.train.mb_train import train_model_based

TINY = {"iterations": 2, "rollouts": 2, "episode_steps": 40, "train_steps": 10, "samples": 12,
        "planning_horizon": 3, "eval_every": 0, "eval_steps": 10, "window": 4, "future": 4}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, str]:
    out = {}
    for method in ("grbal", "mb", "rebal"):
        family = "halfcheetah_disabled_joint"
        path = str(tmp_path_factory.mktemp(method))
        train_model_based(MBConfig(method=method, family=family, decision_steps=2, **TINY), path, progress=False)
        out[method] = path
    return out


def test_returns_split_into_progress_costs_and_alive(runs) -> None:
    table = evaluate_runs([runs["grbal"], runs["mb"]], steps=30, episodes=2)
    for mode in ("grbal", "frozen", "mb", "mb_de", "oracle"):
        ret, progress = table["returns"][mode]["joint=0"], table["progress"][mode]["joint=0"]
        ctrl, alive = table["ctrl_cost"][mode]["joint=0"], table["alive"][mode]["joint=0"]
        # The reward is v_x - 0.05 |a|^2 per step and sum(v_x) = displacement / dt: the terms add up to the return.
        assert ret == pytest.approx(progress - ctrl + alive, abs=1e-6)
        assert alive == 0.0 and ctrl > 0
    assert table["horizon_s"] == [pytest.approx(3 * 2 * 0.01)]  # 3 decisions of 2 steps of 0.01 s
    assert table["grbal_vs_oracle"]["joint=0"] == pytest.approx(
        table["progress"]["grbal"]["joint=0"] / table["progress"]["oracle"]["joint=0"]
    )


def test_the_same_episodes_every_time(runs) -> None:
    """Seeds derive from the run's seed: the table is reproducible, and the oracle is computed once per seed."""
    a = evaluate_runs([runs["grbal"]], steps=20)
    b = evaluate_runs([runs["grbal"]], steps=20)
    assert a["returns"] == b["returns"]
    both = evaluate_runs([runs["grbal"], runs["mb"]], steps=20)  # one seed, one planner: one oracle
    assert both["per_seed"]["oracle"]["joint=0"] == a["per_seed"]["oracle"]["joint=0"]


def test_planner_settings_can_be_overridden_for_method_and_oracle_alike(runs) -> None:
    base = evaluate_runs([runs["grbal"]], steps=20)
    more = evaluate_runs([runs["grbal"]], steps=20, planner={"samples": 24})
    assert base["planner_override"] == {} and more["planner_override"] == {"samples": 24}
    assert more["returns"]["oracle"] != base["returns"]["oracle"]  # the oracle plans with the override too
    assert more["returns"]["grbal"] != base["returns"]["grbal"]


def test_a_posture_limit_can_be_imposed_on_method_and_oracle_alike(runs) -> None:
    """The runs plan with their family's bound (1.3 rad); --posture-limit replaces it for both planners' cost."""
    base = evaluate_runs([runs["grbal"]], steps=20)
    assert base["posture_limit_override"] is None
    assert evaluate_runs([runs["grbal"]], steps=20, posture_limit=1.3)["returns"] == base["returns"]
    tight = evaluate_runs([runs["grbal"]], steps=20, posture_limit=0.02)
    assert tight["posture_limit_override"] == 0.02
    assert tight["returns"]["oracle"] != base["returns"]["oracle"]
    assert tight["returns"]["grbal"] != base["returns"]["grbal"]


def test_change_tests_report_the_progress_after_the_change_and_adapting_vs_frozen(runs) -> None:
    table = evaluate_runs([runs["grbal"]], tasks="change", steps=520, oracle=False)
    (task,) = table["tasks"]
    assert np.isfinite(table["progress_after"]["grbal"][task])  # 20 steps after the change at 500
    diff = table["adapt_vs_frozen"][task]
    assert diff["return_diff"] == pytest.approx(table["returns"]["grbal"][task] - table["returns"]["frozen"][task])
    assert "oracle" not in table["returns"]


def test_rebal_frozen_is_its_weights_with_a_state_that_reads_nothing(runs) -> None:
    """ReBAL adapts by its LSTM state; frozen, the state reads no transitions (stays zero): the same weights, the same
    episodes, paired per seed — with the progress after a mid-episode change."""
    table = evaluate_runs([runs["rebal"]], tasks="change", steps=520, oracle=False, model_error=False)
    (task,) = table["tasks"]
    assert table["returns"]["rebal"][task] != table["returns"]["rebal_frozen"][task]
    diff = table["rebal_adapt_vs_frozen"][task]
    assert diff["return_diff"] == pytest.approx(
        table["returns"]["rebal"][task] - table["returns"]["rebal_frozen"][task]
    )
    after = table["progress_after"]
    assert diff["progress_after_diff"] == pytest.approx(after["rebal"][task] - after["rebal_frozen"][task])
    errors = evaluate_runs([runs["rebal"]], steps=40, model_error=True)["model_error"]
    assert errors["rebal"] != errors["rebal_frozen"]  # the open-loop error too: with and without the window's state


def test_model_error_grows_over_the_horizon(runs) -> None:
    table = evaluate_runs([runs["grbal"]], steps=40, model_error=True)
    err = table["model_error"]["grbal"]
    assert len(err["all_signals"]) == 3 and len(err["velocity"]) == 3  # one value per planning step
    assert err["all_signals"][-1] > err["all_signals"][0]  # open loop: errors compound
