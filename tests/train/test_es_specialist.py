"""The specialist: the baseline's ES loop on one held-out test task, with ES-MAML's episode count."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from metactl import train
from metactl.sim import make_family
from metactl.train import es_maml
from metactl.train.config import ConfigError
from metactl.train.lockstep import Evaluator


def one_iteration(config: train.TrainConfig, monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[Any]]:
    """The episodes of one ES iteration of ``config`` and the task of each."""
    seen: list[Any] = []

    class Recording(Evaluator):
        def rollouts(self, params, tasks, seeds):  # type: ignore[no-untyped-def]
            seen.extend(tasks)
            return super().rollouts(params, tasks, seeds)

    monkeypatch.setattr(es_maml, "Evaluator", Recording)
    family = make_family(config.family)
    spec = config.policy_spec()
    state, _ = es_maml.es_iteration(es_maml.initial_state(config, spec), config, family, spec, config.operator())
    return state.episodes, seen


def test_a_specialist_runs_only_its_test_task_as_many_episodes_as_es_maml(
    tiny_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    specialist = train.config_for("four_corners", **tiny_run, meta=False, specialist_task=2)
    episodes, tasks = one_iteration(specialist, monkeypatch)
    assert set(tasks) == {make_family("four_corners").test_tasks()[2]}
    meta_episodes, meta_tasks = one_iteration(train.config_for("four_corners", **tiny_run), monkeypatch)
    # 2 directions x 2 signs x 1 task x 6 episodes per task (5 adaptation queries + 1 evaluation) = 24
    assert episodes == len(tasks) == meta_episodes == len(meta_tasks) == 24
    assert make_family("four_corners").test_tasks()[2] not in meta_tasks  # ES-MAML samples training tasks


def test_a_specialist_run_records_its_task_and_both_episode_counts(tiny_run: dict[str, Any], tmp_path) -> None:
    config = train.config_for("four_corners", **tiny_run, meta=False, specialist_task=1)
    summary = train.train(config, str(tmp_path), progress=False).summary
    # 3 iterations x 24 episodes (above); the ES-MAML count from the config alone
    assert summary["episodes"] == summary["es_maml_episodes"] == es_maml.training_episodes(config) == 72
    assert summary["specialist_task"] == 1 and summary["meta"] is False
    assert summary["specialist_task_params"] == make_family("four_corners").test_tasks()[1].to_dict()
    with open(os.path.join(tmp_path, "config.json")) as f:
        assert json.load(f)["specialist_task"] == 1


def test_a_bad_specialist_index_names_the_range_and_a_meta_specialist_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"specialist_task: halfcheetah_fb has test tasks 0\.\.3"):
        train.config_for("halfcheetah_fb", meta=False, specialist_task=4)
    with pytest.raises(ConfigError, match="add --no-meta"):
        train.config_for("halfcheetah_fb", specialist_task=0)


def test_a_run_saved_before_the_specialist_setting_resumes(tiny_run: dict[str, Any], tmp_path) -> None:
    config = train.config_for("four_corners", **{**tiny_run, "iterations": 2})
    train.train(config, str(tmp_path), progress=False)
    path = os.path.join(tmp_path, "config.json")
    with open(path) as f:
        saved = json.load(f)
    del saved["specialist_task"]  # what a run of an older version wrote
    with open(path, "w") as f:
        json.dump(saved, f)
    again = train.train(config, str(tmp_path), resume=True, progress=False)  # finished: evaluated once more
    assert again.summary["iterations"] == 2
