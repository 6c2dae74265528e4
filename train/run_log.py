"""Metrics of a training run: CSV (truncated to the checkpoint on resume), TensorBoard, a PNG curve."""

from __future__ import annotations

import csv
import math
import os
from typing import Any

COLUMNS = (
    "iteration",
    "episodes",
    "env_steps",
    "wall_s",
    "train_objective",
    "heldout_pre",
    "heldout_post",
)


class RunLog:
    """Appends one row per iteration to ``metrics.csv`` and TensorBoard scalars under ``tb/``."""

    def __init__(self, out_dir: str, resume_from: int = 0):
        self.path = os.path.join(out_dir, "metrics.csv")
        rows = [r for r in read_metrics(self.path) if int(r["iteration"]) <= resume_from] if resume_from else []
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            writer.writerows({k: r[k] for k in COLUMNS} for r in rows)
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(os.path.join(out_dir, "tb"), purge_step=resume_from + 1 if resume_from else None)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow({k: row.get(k, "") for k in COLUMNS})
        step = int(row["iteration"])
        for key in ("train_objective", "heldout_pre", "heldout_post"):
            value = row.get(key)
            if value is not None and value != "" and math.isfinite(float(value)):
                self.tb.add_scalar(key, float(value), step)

    def close(self) -> None:
        self.tb.close()


def read_metrics(path: str) -> list[dict[str, str]]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_learning_curve(metrics_path: str, png_path: str, title: str) -> None:
    """Training objective and held-out returns before/after adaptation vs. episodes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    fig, ax = plt.subplots(figsize=(7, 4))
    ep = [int(r["episodes"]) for r in rows]
    ax.plot(ep, [float(r["train_objective"]) for r in rows], lw=1, alpha=0.6, label="training objective")
    for key, label in (("heldout_pre", "held-out, before adaptation"), ("heldout_post", "held-out, after adaptation")):
        pts = [(int(r["episodes"]), float(r[key])) for r in rows if r[key] != ""]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=label)
    ax.set_xlabel("episodes")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
