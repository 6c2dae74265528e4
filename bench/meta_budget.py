"""The sizes of a ``metactl bench meta`` run: a light module of its own, so the command line can offer them as
flags without importing torch."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Budget:
    """Sizes of one ``bench meta`` run (the defaults are the documented run; tests pass tiny ones)."""

    seeds: int = 3
    """Independently trained models per row (the reported seeds 0..seeds-1; selection uses its own seed)."""
    sinusoid_steps: int = 2000
    """Meta-steps (Adam steps on the meta-gradient) per sinusoid model; MAML's paper ran 70k."""
    sinusoid_batch: int = 25
    """Tasks per sinusoid meta-batch (MAML's 25)."""
    cheetah_steps: int = 1000
    """Meta-steps per HalfCheetah dynamics model."""
    cheetah_batch: int = 16
    """Windows (M + K transitions) per HalfCheetah meta-batch."""
    test_tasks: int = 200
    """Fixed test tasks (sinusoids; joint-0 windows) every model is scored on."""
    val_tasks: int = 100
    """Fixed validation tasks (other sinusoids; joint-5 windows) hyperparameters are chosen on."""
    cheetah_episodes: int = 20
    """Episodes per disabled joint (half random actions, half gaits), for training and again for evaluation."""
    cheetah_episode_steps: int = 500
    """Control steps per collected HalfCheetah episode."""
    outer_lr: float = 1e-3
    """Adam step size of the outer optimization (MAML's and GrBAL's 1e-3), the baseline's too."""
    memory: bool = True
    """Measure peak memory per meta-step (one fresh process per row, ~3 s each)."""
