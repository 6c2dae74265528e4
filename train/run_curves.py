"""Per-iteration metrics of a model-based run: ``metrics.csv`` (truncated to the checkpoint on resume) and a PNG."""

from __future__ import annotations

import csv
import math
import os
from typing import Any

from metactl.train.run_log import read_metrics

COLUMNS = ("iteration", "env_steps", "wall_s", "random_actions", "rollout_return", "model_loss", "heldout_return")


class MBCurves:
    """``metrics.csv`` in ``out_dir`` with one row per iteration, TensorBoard scalars under ``tb/`` (by environment
    step), and ``curve.png`` drawn from the CSV."""

    def __init__(self, out_dir: str, resume_from: int = 0):
        self.path = os.path.join(out_dir, "metrics.csv")
        self.png_path = os.path.join(out_dir, "curve.png")
        rows = [r for r in read_metrics(self.path) if int(r["iteration"]) <= resume_from] if resume_from else []
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            writer.writerows({k: r.get(k, "") for k in COLUMNS} for r in rows)
        from tensorboardX import SummaryWriter

        purge = int(rows[-1]["env_steps"]) + 1 if rows else None  # a resumed run drops the events after its checkpoint
        self.tb = SummaryWriter(os.path.join(out_dir, "tb"), purge_step=purge)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow({k: row.get(k, "") for k in COLUMNS})
        step = int(row["env_steps"])
        for key in ("rollout_return", "model_loss", "heldout_return", "wall_s"):
            value = row.get(key)
            if value not in (None, "") and math.isfinite(float(value)):
                self.tb.add_scalar(key, float(value), step)
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()

    def plot(self, title: str) -> None:
        """Returns of the collected (training-task) episodes and held-out returns, and the model loss, vs env steps."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = read_metrics(self.path)
        steps = [int(r["env_steps"]) for r in rows]
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        ax.plot(steps, [float(r["rollout_return"]) for r in rows], marker=".", label="collected episodes (train tasks)")
        pts = [(int(r["env_steps"]), float(r["heldout_return"])) for r in rows if r["heldout_return"] not in ("", None)]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label="held-out test tasks")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("episode return")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        losses = [float(r["model_loss"]) for r in rows]
        ax2.semilogy(steps, [v if math.isfinite(v) and v > 0 else float("nan") for v in losses])
        ax2.set_xlabel("environment steps")
        ax2.set_ylabel("training loss (normalized deltas)")
        ax2.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.png_path, dpi=110)
        plt.close(fig)
