"""The safety layer and the loop timer, on their own."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from metactl.deploy import load_hardware_config, pacing
from metactl.deploy.config_sections import LimitsSection, SafetySection
from metactl.deploy.safety import SafetyLayer, SafetyStopError


@pytest.fixture
def config(shipped_config):
    base = load_hardware_config(shipped_config("halfcheetah_fb"))
    limits = LimitsSection(
        command_low=(-0.5,) * 6,
        command_high=(0.5,) * 6,
        max_command_change=(0.2,) * 6,
        position={"pos:rooty": (-1.0, 1.0)},
        velocity={"vel:bthigh": 10.0},
    )
    return dataclasses.replace(base, limits=limits, safety=SafetySection(safe_command=(0.1,) * 6))


def test_commands_are_clipped_then_rate_limited(config) -> None:
    records = []
    layer = SafetyLayer(config, sink=lambda topic, r: records.append(topic))
    out = layer.command(np.array([2.0, -2.0, 0.15, 0.0, 0.3, -0.1]))
    # From the safe command 0.1, at most 0.2 per step, inside [-0.5, 0.5].
    np.testing.assert_allclose(out, [0.3, -0.1, 0.15, 0.0, 0.3, -0.1])
    np.testing.assert_allclose(layer.command(np.full(6, 2.0)), [0.5, 0.1, 0.35, 0.2, 0.5, 0.1])
    assert layer.counts["limited_commands"] == 2 and not records


def test_non_finite_command_becomes_the_safe_command_and_a_fault(config) -> None:
    records = []
    layer = SafetyLayer(config, sink=lambda topic, r: records.append((topic, r["code"])))
    out = layer.command(np.array([np.nan, 0, 0, 0, np.inf, 0]))
    np.testing.assert_array_equal(out, np.full(6, 0.1))
    assert records == [("/fault", "non_finite_command")] and layer.counts["non_finite_commands"] == 1


def test_state_limits_stop_the_run(config) -> None:
    layer = SafetyLayer(config)
    obs = np.zeros(17)
    layer.check_state(obs)
    obs[1] = 1.5  # pos:rooty above 1.0
    with pytest.raises(SafetyStopError, match=r"pos:rooty = 1.5 outside \[-1, 1\]"):
        layer.check_state(obs)
    obs[1], obs[11] = 0.0, -11.0  # vel:bthigh
    with pytest.raises(SafetyStopError, match=r"vel:bthigh = -11 outside \[-10, 10\]"):
        layer.check_state(obs)


class _FakeClock:
    """perf_counter/sleep with virtual time: sleeping advances it, as does ``work``."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        self.now += 1e-7  # every reading costs a little time, so busy-waits end
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s

    def work(self, s: float) -> None:
        self.now += s


def test_loop_timer_sleeps_to_deadlines_without_drift(monkeypatch) -> None:
    clock = _FakeClock()
    monkeypatch.setattr(pacing, "time", clock)
    timer = pacing.LoopTimer(0.01)
    timer.start()
    t0 = clock.now
    works = [0.003, 0.008, 0.025, 0.002, 0.004]  # the third overruns by 1.5 periods
    for w in works:
        timer.wait()
        clock.work(w)
        timer.lap("work")
    timer.wait()
    # Deadlines stay on the t0 + k * period grid: 6 waits + 2 skipped deadlines (0.04, 0.05) -> 8 periods.
    assert clock.now - t0 == pytest.approx(0.08, abs=1e-5)
    assert timer.met == [True, True, False, True, True] and timer.skipped == 2
    s = timer.summary()
    assert s["cycles"] == 5 and s["deadline_met_fraction"] == pytest.approx(0.8)
    assert s["jitter_p99_ms"] < 0.01 and s["work_p50_us"] == pytest.approx(4000, rel=1e-2)
