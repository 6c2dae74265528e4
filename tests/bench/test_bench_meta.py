"""``bench meta`` at a tiny budget: its outputs, its splits, and its honest comparison rule."""

from __future__ import annotations

import json
import math
import os

import numpy as np

from metactl.bench import meta_sinusoid as sinusoid
from metactl.bench.meta import Budget, bench_meta, compare

TINY = Budget(seeds=2, sinusoid_steps=15, cheetah_steps=4, sinusoid_batch=5, cheetah_batch=4, test_tasks=8,
              val_tasks=6, cheetah_episodes=2, cheetah_episode_steps=40, memory=False)  # fmt: skip


def test_bench_meta_writes_its_tables_summary_and_plot(tmp_path, capsys) -> None:
    rows = [("maml", "sgd"), ("evo_maml", "meta_sgd")]
    summary = bench_meta(str(tmp_path), budget=TINY, rows=rows, cheetah_rows=[("fomaml", "sgd")])
    out = capsys.readouterr().out
    assert "MAML sinusoid" in out and "HalfCheetah held-out joint 0" in out and "pretrained + SGD" in out
    saved = json.load(open(tmp_path / "summary.json"))
    assert os.path.getsize(tmp_path / "meta_learners.png") > 0
    assert set(saved["sinusoid"]["rows"]) == {"maml/sgd", "evo_maml/meta_sgd"}
    assert set(saved["cheetah"]["rows"]) == {"fomaml/sgd"}
    for problem in ("sinusoid", "cheetah"):
        for res in [saved[problem]["baseline"], *saved[problem]["rows"].values()]:
            assert set(res["per_seed"]["after_1"]) and len(res["per_seed"]["after_1"]) == TINY.seeds
            assert res["step_ms"] > 0
    assert "rollout_after_1" in saved["cheetah"]["rows"]["fomaml/sgd"]["mean"]
    evo = saved["sinusoid"]["rows"]["evo_maml/meta_sgd"]
    assert len(evo["selection"]) == 4 and {"evo_sigma", "evo_temperature"} <= set(evo["settings"]) | {"evo_sigma"}
    assert saved["sinusoid"]["baseline"]["settings"]["finetune_lr"].keys() == {"0", "1", "10"}
    assert summary["sinusoid"]["rows"]["maml/sgd"]["vs_baseline"].keys() == {1, 10}


def test_the_sinusoid_tasks_follow_the_maml_paper() -> None:
    (xs, ys), (xq, yq) = sinusoid.sample(np.random.default_rng(0), 400)
    assert xs.shape == (400, 10, 1) and xq.shape == (400, 10, 1)
    assert float(xs.min()) >= -5 and float(xs.max()) <= 5
    amp = np.abs(np.concatenate([ys.numpy(), yq.numpy()], axis=1)).max(axis=(1, 2))
    assert amp.max() <= 5.0 and np.quantile(amp, 0.9) > 4  # |y| <= A <= 5, and the range is used
    (_, _), (xt, _) = sinusoid.fixed_tasks("test", 3)
    (_, _), (xv, _) = sinusoid.fixed_tasks("validation", 3)
    assert xt.shape[1] == sinusoid.QUERY_POINTS and not np.allclose(xt.numpy(), xv.numpy())  # disjoint task sets


def test_a_gap_inside_the_noise_is_no_difference() -> None:
    def res(mean: float, se: float) -> dict:
        return {"mean": {"after_1": mean}, "se": {"after_1": se}}

    assert compare(res(1.0, 0.1), res(1.2, 0.1), "after_1") == "no difference"  # 0.2 < 2 * sqrt(0.02) = 0.28
    assert compare(res(1.0, 0.1), res(1.4, 0.1), "after_1") == "better"
    assert compare(res(1.4, 0.1), res(1.0, 0.1), "after_1") == "worse"
    assert compare(res(math.inf, math.nan), res(1.0, 0.1), "after_1") == "diverged"
