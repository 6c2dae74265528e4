"""Example hardware configs, shipped as package data: one TOML file per robot (``metactl.deploy.hardware_config``)."""

from __future__ import annotations

import os

DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def config_path(name: str) -> str:
    """The path of the shipped config ``name`` (``sim_four_corners`` or ``sim_four_corners.toml``)."""
    file = name if name.endswith(".toml") else f"{name}.toml"
    return os.path.join(DIRECTORY, file)


def names() -> list[str]:
    """Every shipped config, without the ``.toml`` suffix."""
    return sorted(f[: -len(".toml")] for f in os.listdir(DIRECTORY) if f.endswith(".toml"))
