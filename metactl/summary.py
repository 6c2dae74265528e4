"""``summary.json``: what every command writes at the end, with the package versions it ran with.

Standard library only, so the robot-side runtime writes its summaries the same way as the workstation tools.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
from typing import Any

PACKAGES = ("metactl", "numpy", "onnxruntime", "pyserial", "mujoco", "gymnasium", "torch", "onnx", "tyro")
"""Packages whose versions a summary records (None where not installed)."""


def package_versions() -> dict[str, str | None]:
    """Python's and each package's installed version."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars as lists and Python numbers, tuples as lists, non-finite floats as
    None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy arrays and scalars, without importing numpy
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_summary(out_dir: str, summary: dict[str, Any], name: str = "summary.json") -> str:
    """Write ``summary`` (plus ``versions``) as ``out_dir/name`` atomically; its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(jsonable({**summary, "versions": package_versions()}), f, indent=2, allow_nan=False)
    os.replace(tmp, path)
    return path
