"""Physical perturbations of an emulated robot's MuJoCo model: payload, mass and friction scales."""

from __future__ import annotations

from typing import Any

import numpy as np


def apply_model_perturbation(batch: Any, payload_kg: float, mass_scale: float, friction_scale: float) -> None:
    """Change the models of a ``sim`` batch in place: every body's mass and inertia x ``mass_scale``,
    ``payload_kg`` added to the root body (inertia scaled with its mass), sliding friction x ``friction_scale``.

    Raises ``ValueError`` for a batch without MuJoCo models (the 2-D point robots) when asked to change them.
    """
    if payload_kg == 0 and mass_scale == 1 and friction_scale == 1:
        return
    if not hasattr(batch, "edit_models"):
        raise ValueError(
            "payload, mass and friction perturbations need a MuJoCo robot; this family has no physics model"
        )

    def edit(model: Any) -> None:
        model.body_mass[:] *= mass_scale
        model.body_inertia[:] *= mass_scale
        root = 1  # body 0 is the world
        if payload_kg:
            ratio = (model.body_mass[root] + payload_kg) / model.body_mass[root]
            model.body_mass[root] *= ratio
            model.body_inertia[root] *= ratio
        model.geom_friction[:, 0] = np.asarray(model.geom_friction[:, 0]) * friction_scale

    batch.edit_models(edit)
