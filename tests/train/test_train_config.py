"""TrainConfig validation: every bad setting raises ConfigError whose message starts with the field's name."""

from __future__ import annotations

import json
from typing import Any

import pytest

from metactl import train
from metactl.train import ConfigError, TrainConfig

BAD_SETTINGS = [
    ("family", {"family": "pong"}),
    ("policy", {"policy": "cnn"}),
    ("optimizer", {"optimizer": "rmsprop"}),
    ("iterations", {"iterations": 0}),
    ("directions", {"directions": 0}),
    ("tasks_per_iteration", {"tasks_per_iteration": -1}),
    ("eval_every", {"eval_every": 0}),
    ("eval_repeats", {"eval_repeats": 0}),
    ("checkpoint_every", {"checkpoint_every": 0}),
    ("horizon", {"horizon": -5}),
    ("sigma", {"sigma": 0.0}),
    ("learning_rate", {"learning_rate": -0.1}),
    ("hidden", {"policy": "mlp", "hidden": ()}),
    ("adaptation", {"adaptation": {"name": "newton"}}),
    ("adaptation", {"adaptation": {"name": "hill_climb", "queries": 10, "batch_size": 3}}),
    ("adaptation", {"adaptation": {"name": "es_grad", "lr": 0.1}}),
    ("adaptation", {"adaptation": {"name": "es_grad", "queries": "ten"}}),
    ("iterations", {"iterations": 2.5}),
    ("hidden", {"policy": "mlp", "hidden": (-3,)}),
    ("specialist_task", {"meta": False, "specialist_task": 4}),  # four_corners has test tasks 0..3
    ("specialist_task", {"meta": False, "specialist_task": -1}),
    ("specialist_task", {"specialist_task": 0}),  # a specialist without --no-meta
]


@pytest.mark.parametrize(("field", "settings"), BAD_SETTINGS)
def test_bad_setting_raises_config_error_naming_the_field(field: str, settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        TrainConfig(**settings)


def test_config_for_rejects_an_unknown_family_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"^family:.*four_corners.*halfcheetah_fb"):
        train.config_for("pong")


def test_unknown_setting_is_named() -> None:
    with pytest.raises(ConfigError, match="'lr'"):
        train.config_for("four_corners", lr=0.1)
    with pytest.raises(ConfigError, match="'lr'"):
        TrainConfig.from_dict({"lr": 0.1})


def test_config_for_applies_preset_then_overrides_and_ignores_none() -> None:
    for family, preset in train.PRESETS.items():
        cfg = train.config_for(family)
        assert cfg.family == family
        for key, value in preset.items():
            if key == "adaptation":  # the preset names some operator settings; the rest keep their defaults
                assert {k: getattr(cfg.adaptation, k) for k in value} == value
            else:
                assert getattr(cfg, key) == value
    cfg = train.config_for("halfcheetah_fb", sigma=0.3, iterations=None)
    assert cfg.sigma == 0.3
    assert cfg.iterations == train.PRESETS["halfcheetah_fb"]["iterations"]


def test_adaptation_flags_merge_into_the_preset_field_by_field() -> None:
    """The two CLI bugs of issue 15: --adapt-queries was ignored without --adaptation, and naming the operator threw
    the family preset away. Overrides now change only the settings they name."""
    preset = train.PRESETS["four_corners"]["adaptation"]
    cfg = train.config_for("four_corners", adaptation={"queries": 3})
    assert cfg.adaptation.queries == 3
    assert (cfg.adaptation.sigma, cfg.adaptation.mode) == (preset["sigma"], preset["mode"])
    cfg = train.config_for("four_corners", adaptation={"name": "hill_climb"})
    assert cfg.adaptation.operator_dict() == {**cfg.adaptation.operator_dict(), **preset}


def test_config_survives_a_json_round_trip() -> None:
    cfg = train.config_for("ant_fb", policy="mlp", hidden=[16, 8], seed=3)
    assert cfg.hidden == (16, 8)
    assert TrainConfig.from_dict(json.loads(cfg.dumps())) == cfg


def test_config_is_frozen() -> None:
    cfg = train.config_for("four_corners")
    with pytest.raises(AttributeError):
        cfg.sigma = 1.0  # type: ignore[misc]
