"""User-facing errors of the deploy package.

Every message is one line that names the file and field at fault and says how to
fix it, because it is read on a robot's console, often over SSH, mid-experiment.
"""


class BundleError(ValueError):
    """An export bundle is missing, corrupt, or does not fit the robot it is run on."""


class HardwareConfigError(ValueError):
    """A hardware config file is missing, malformed, or describes an impossible robot."""


class ProtocolError(ValueError):
    """A message that cannot be encoded, or bytes that are not a valid protocol v1 frame."""
