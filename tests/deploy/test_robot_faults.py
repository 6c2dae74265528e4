"""A robot that reboots or whose link flaps mid-run, played by the emulator (``--fault``): the host recognizes it,
safe-stops, re-handshakes, reruns start-up and the episode (``serial.reconnect_s``), or ends the run as configured —
logging all of it (issue 18)."""

from __future__ import annotations

import json

import pytest

from metactl.deploy import run_online
from metactl.deploy.mcap_reader import read_messages
from metactl.emulator.faults import FaultSchedule, parse_fault
from metactl.emulator.launcher import emulator_process


def test_fault_specs_parse_and_schedule() -> None:
    faults = [parse_fault(s) for s in ("flap@2:0.5", "reboot@1", "garbage@3:64", "delay@4:1:30")]
    schedule = FaultSchedule(faults)
    assert [f.kind for f in schedule.due(3.5)] == ["reboot", "flap", "garbage"]
    assert schedule.due(3.6) == [] and schedule.link_down(2.2) and not schedule.link_down(2.6)
    assert schedule.delay_s(4.5) == pytest.approx(0.03)
    with pytest.raises(ValueError, match="reboot@T, flap@T:D"):
        parse_fault("meltdown@3")
    with pytest.raises(ValueError, match="flap takes 1 value"):
        parse_fault("flap@3")


@pytest.mark.parametrize(("reconnect_s", "status"), [(3.0, "completed"), (0.0, "robot_reboot")])
def test_a_rebooted_robot_is_reconnected_or_ends_the_run(hc_identity_bundle, serial_robot_config, tmp_path,
                                                         reconnect_s, status) -> None:  # fmt: skip
    config = serial_robot_config(**{"max_missed_replies = 2": f"max_missed_replies = 2\nreconnect_s = {reconnect_s}"})
    out = str(tmp_path / "out")
    with emulator_process(config, str(tmp_path / "emu"), faults=("reboot@2.5",)) as emu:
        report = run_online(hc_identity_bundle, config, port=emu.port, out_dir=out, time_scale=1)
    assert report.status == status and report.link["link"] == "serial"
    log = read_messages(f"{out}/run.mcap")
    codes = [r["code"] for r in log["/fault"] if r["source"] == "runtime"]
    assert codes == ["robot_reboot"]  # recognized as what it was, once
    if status == "completed":
        assert [r["event"] for r in log["/link"]].count("reconnected") == 1
        assert len(report.episodes) == 5 and report.exit_code == 0  # every episode, the interrupted one run again
    else:
        assert report.exit_code == 3 and len(report.episodes) < 5


def test_a_link_that_flaps_is_reconnected(hc_identity_bundle, serial_robot_config, tmp_path) -> None:
    config = serial_robot_config(**{"max_missed_replies = 2": "max_missed_replies = 2\nreconnect_s = 3.0"})
    out = str(tmp_path / "out")
    with emulator_process(config, str(tmp_path / "emu"), faults=("flap@2.5:0.6", "garbage@4:200")) as emu:
        report = run_online(hc_identity_bundle, config, port=emu.port, out_dir=out, time_scale=1)
    assert report.status == "completed" and len(report.episodes) == 5
    log = read_messages(f"{out}/run.mcap")
    assert "link_lost" in [r["code"] for r in log["/fault"] if r["source"] == "runtime"]
    assert "reconnected" in [r["event"] for r in log["/link"]]
    assert report.health["link_counters"]["bad_frames"] >= 1  # the garbage burst: counted, skipped


def test_the_emulator_clock_runs_at_its_time_scale(hc_identity_bundle, serial_robot_config, tmp_path) -> None:
    """At 10x, a watchdog of 5 control periods fires after 25 ms of wall time: the timeline says when, in robot time,
    and that commanded motion ended there (a host that pauses mid-episode, played by a host-side flap)."""
    config = serial_robot_config()
    stats_file = tmp_path / "emu" / "stats.json"
    out = str(tmp_path / "out")
    with emulator_process(config, str(tmp_path / "emu"), faults=("flap@0.3:1.0",), time_scale=10.0,
                          stats_file=str(stats_file)) as emu:  # fmt: skip
        report = run_online(hc_identity_bundle, config, port=emu.port, out_dir=out, time_scale=10.0)
    assert report.status == "link_lost"  # the flap outlasts the missed-reply budget; no reconnect configured
    stats = json.loads(stats_file.read_text())
    fault = next(e for e in stats["timeline"] if e["event"] == "fault")
    assert fault["spec"] == "flap@0.3:1" and fault["t"] == pytest.approx(0.3) and fault["duration"] == 1.0
    trips = [e for e in stats["timeline"] if e["event"] == "disarm" and e["t"] >= fault["t"]]
    assert trips, stats["timeline"]
    # The host's SAFE_STOP is lost in the flap, so the robot's own watchdog ends the motion: 0.25 s of robot time
    # after the last command that arrived (at most one control period before the flap), well inside the flap.
    assert trips[0]["cause"] == "watchdog" and 0.2 <= trips[0]["t"] - fault["t"] <= 0.3 + 0.05
    assert report.health["log"]["lost"] == 0 and report.health["log"]["records"] > 0


def test_bench_faults_accounts_for_every_fault(tmp_path) -> None:
    from metactl.bench.faults import bench_faults

    summary = bench_faults(str(tmp_path), robot_hours=0.01, faults_per_run=4, seed=3)
    assert summary["runs"] >= 1 and summary["robot_hours"] >= 0.01
    assert summary["safe_stops"] + summary["absorbed"] == summary["faults_injected"] > 0
    assert sum(summary["faults_by_kind"].values()) == summary["faults_injected"]
    assert summary["lost_log_records"] == 0 and summary["log_records"] > 0
    assert summary["commands_after_reboot"] == 0 and summary["exit_code"] == 0
    runs = json.loads((tmp_path / "summary.json").read_text())["runs"]
    assert summary["runs_completed"] + summary["runs_failed_over"] + sum(summary["runs_ended"].values()) == len(runs)
