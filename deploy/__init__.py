"""Deploy: run an exported bundle on a robot and adapt it online (the robot-side runtime).

Robot side (this package minus the exporters) needs only numpy, onnxruntime, pyserial and
``metactl.controllers``; ``metactl.sim`` is imported lazily for the simulated robot only.
``export_bundle`` (workstation side, needs ``onnx``) is loaded on first use, so importing
``metactl.deploy`` never imports ``onnx``.
"""

from typing import Any

from metactl.deploy.bundles import load_bundle
from metactl.deploy.errors import BundleError, HardwareConfigError
from metactl.deploy.hardware_config import HardwareConfig, load_hardware_config
from metactl.deploy.link import RobotLink, RobotState
from metactl.deploy.links import open_link
from metactl.deploy.policy_bundle import PolicyBundle
from metactl.deploy.report import EpisodeRecord, OnlineReport
from metactl.deploy.runtime import check_compatibility, run_online
from metactl.deploy.sim_robot import SimRobot

__all__ = [
    "BundleError",
    "EpisodeRecord",
    "HardwareConfig",
    "HardwareConfigError",
    "OnlineReport",
    "PolicyBundle",
    "RobotLink",
    "RobotState",
    "SimRobot",
    "check_compatibility",
    "export_bundle",
    "load_bundle",
    "load_hardware_config",
    "open_link",
    "run_online",
]


def __getattr__(name: str) -> Any:
    """Lazy ``export_bundle``: imports ``onnx`` only when the exporter is used."""
    if name == "export_bundle":
        from metactl.deploy.export import export_bundle

        return export_bundle
    raise AttributeError(f"module 'metactl.deploy' has no attribute {name!r}")
