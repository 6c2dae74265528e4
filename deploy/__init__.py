"""Deploy: run an exported policy bundle on a robot and adapt it online.

Robot side (this package minus ``export``) needs only numpy, onnxruntime, pyserial
and ``controllers``; ``sim`` is imported lazily for the simulated robot only.
``export_bundle`` (workstation side, needs ``onnx``) is loaded on first use, so
``import deploy`` never imports ``onnx``.
"""

from typing import Any

from deploy.bundle import Bundle
from deploy.errors import BundleError, HardwareConfigError
from deploy.hardware_config import HardwareConfig, load_hardware_config
from deploy.report import EpisodeRecord, OnlineReport
from deploy.robot import RobotLink, RobotState, SimRobot, open_link
from deploy.runtime import check_compatibility, run_online

__all__ = [
    "Bundle",
    "BundleError",
    "EpisodeRecord",
    "HardwareConfig",
    "HardwareConfigError",
    "OnlineReport",
    "RobotLink",
    "RobotState",
    "SimRobot",
    "check_compatibility",
    "export_bundle",
    "load_hardware_config",
    "open_link",
    "run_online",
]


def __getattr__(name: str) -> Any:
    """Lazy ``deploy.export_bundle``: imports ``onnx`` only when the exporter is used."""
    if name == "export_bundle":
        from deploy.export import export_bundle

        return export_bundle
    raise AttributeError(f"module 'deploy' has no attribute {name!r}")
