"""Training configs from files: start or re-run a run from its saved ``config.json`` (or a TOML/JSON file).

``metactl train es|grbal|rebal|mb`` parse their flags against the config this returns: the family's preset
(ES), the method's defaults (model-based), or a saved file; flags then override it field by field.
"""

from __future__ import annotations

import json
import os
import tomllib
from typing import Any

from metactl.train.config import ConfigError, TrainConfig, config_for
from metactl.train.mb_config import MBConfig

CONFIG_FILE = "config.json"
"""What every training run saves beside its outputs: its resolved config."""


def read_config_file(path: str) -> dict[str, Any]:
    """The settings in ``path``: a run folder (its config.json), a .json or a .toml file."""
    if os.path.isdir(path):
        path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"--config {path}: no such file; pass a run folder, its config.json, or a TOML file")
    try:
        if path.endswith(".toml"):
            with open(path, "rb") as f:
                data = tomllib.load(f)
        else:
            with open(path) as f:
                data = json.load(f)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: not valid {'TOML' if path.endswith('.toml') else 'JSON'} ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: must hold a table of settings, got {type(data).__name__}")
    return data


def initial_config(method: str, path: str | None, family: str | None) -> TrainConfig | MBConfig:
    """What ``metactl train <method>`` starts from: the saved config at ``path``, else the preset of ``family``
    (ES) or the method's defaults (GrBAL / ReBAL / MB)."""
    if method == "es":
        if path is None:
            return config_for(family or TrainConfig.family)
        return TrainConfig.from_dict(read_config_file(path))
    if path is None:
        return MBConfig(method=method, **({"family": family} if family else {}))
    data = read_config_file(path)
    saved = data.get("method", method)
    if saved != method:
        raise ConfigError(f"--config {path} is a {saved} config; run 'metactl train {saved} --config {path}'")
    return MBConfig.from_dict({**data, "method": method})
