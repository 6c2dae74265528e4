"""The one bundle seam: read ``metadata.json`` once, then open the bundle of its kind.

Every kind implements ``plan(mode) -> AdaptationPlan`` (``deploy.episodes``), so the runtime runs any
bundle the same way; a new kind registers its loader here and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from metactl.deploy import metadata as md
from metactl.deploy.episodes import AdaptationPlan


class DeployedBundle(Protocol):
    """A bundle opened on the robot."""

    directory: str
    meta: md.BundleMetadata

    @property
    def metadata(self) -> dict[str, Any]: ...

    def plan(self, mode: str | None = None) -> AdaptationPlan:
        """How the bundle adapts on the robot; ``mode`` selects a model bundle's run mode (BundleError if wrong)."""


def _policy(directory: str, meta: md.BundleMetadata) -> DeployedBundle:
    from metactl.deploy.policy_bundle import PolicyBundle

    return PolicyBundle.load(directory, meta)  # type: ignore[arg-type]


def _model(directory: str, meta: md.BundleMetadata) -> DeployedBundle:
    from metactl.deploy.model_bundle import ModelBundle

    return ModelBundle.load(directory, meta)  # type: ignore[arg-type]


def _rl2(directory: str, meta: md.BundleMetadata) -> DeployedBundle:
    from metactl.deploy.rl2_bundle import RL2Bundle

    return RL2Bundle.load(directory, meta)  # type: ignore[arg-type]


LOADERS: dict[str, Callable[[str, md.BundleMetadata], DeployedBundle]] = {
    md.POLICY_KIND: _policy,
    md.MODEL_KIND: _model,
    md.RL2_KIND: _rl2,
}
"""Bundle kind -> how to open it (its metadata already parsed)."""


def load_bundle(directory: str) -> DeployedBundle:
    """Open the bundle in ``directory``, whatever its kind; ``BundleError`` naming the first problem."""
    meta = md.parse_metadata(md.read_metadata_json(directory), directory)
    return LOADERS[meta.kind](directory, meta)
