"""The reference firmware on its POSIX port (a process on two ptys) with the MuJoCo plant on its motor bus.

Host-driven (protocol v1, the existing runtime unchanged) and on-controller (protocol v2) runs against the
Python runtime on the Python emulator; PARAMS refused mid-episode and checked; clean refusal between protocol
versions; the watchdog safe-stops the motors when the host dies.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from firmware_helpers import kill_host_mid_episode, returns, robot_config

from metactl.deploy import protocol as pr
from metactl.deploy import protocol2 as p2
from metactl.deploy import run_online
from metactl.deploy.c_export import params_crc
from metactl.deploy.controller_link import ControllerLink, ProtocolVersionError
from metactl.deploy.hardware_config import load_hardware_config
from metactl.deploy.transport import SerialTransport
from metactl.emulator.firmware_loop import firmware_in_the_loop
from metactl.emulator.launcher import emulator_process
from metactl.emulator.plant import read_plant_log


def test_host_driven_v1_through_the_c_firmware_equals_the_python_emulator(
    hc_bundle, posix_firmware, python_runtime, tmp_path
) -> None:
    config = robot_config(str(tmp_path / "robot.toml"))
    with firmware_in_the_loop(posix_firmware, config, str(tmp_path / "loop")) as loop:
        report = run_online(hc_bundle, config, port=loop.host_port, seed=4, time_scale=0)
    assert report.status == "completed" and len(report.episodes) == 5
    # The host computes every command; the firmware forwards it to the same physics: bit-identical returns.
    np.testing.assert_array_equal(returns(report), returns(python_runtime))


def test_the_policy_on_the_controller_matches_the_python_runtime_and_adapts(
    hc_bundle, posix_firmware, python_runtime, tmp_path
) -> None:
    config = robot_config(str(tmp_path / "robot.toml"), controller=True)
    with firmware_in_the_loop(posix_firmware, config, str(tmp_path / "loop")) as loop:
        report = run_online(hc_bundle, config, port=loop.host_port, seed=4, time_scale=0, out_dir=str(tmp_path / "o"))
    assert report.status == "completed" and report.link["policy_on"] == "controller"
    assert [e.kind for e in report.episodes] == ["pre", "query", "query", "query", "post"]
    # The POSIX port is x86 gcc arithmetic, ~1e-6 from onnxruntime's MLAS (the Cortex-M4F build is bit-identical:
    # test_firmware_qemu.py holds it to 1e-3); HalfCheetah's contacts grow that into returns ~1% apart (measured
    # 0.028 on a return of -3.2), so here the returns are compared loosely and the actions strictly (below).
    np.testing.assert_allclose(returns(report), returns(python_runtime), rtol=0.05, atol=0.05)
    # Every command the controller wrote was checked against onnxruntime + the host's safety layer.
    timing = report.health["timing"]
    assert timing["steps"] == 100 and timing["parity_mismatches"] == 0 and timing["parity_max_abs_diff"] <= 1e-5
    # The same hill-climbing decisions: the same adapted parameters, uploaded as PARAMS between episodes.
    np.testing.assert_array_equal(report.adapted_params, python_runtime.adapted_params)
    controller = report.health["controller"]
    assert controller["episodes"] == 5 and controller["params_applied"] == controller["uploads"]["uploads"] >= 2


def _start(link: ControllerLink, steps: int = 100_000, flags: int = p2.START_STREAM) -> int:
    """Start a long paced episode and wait for its first STEP; the EPISODE_START's seq."""
    seq = link.transport.send(p2.EpisodeStart(3, steps, flags))
    deadline = time.perf_counter() + 5
    while (f := link.transport.receive(deadline)) is not None:
        if isinstance(f.msg, p2.Step):
            return seq
    raise AssertionError("no STEP from the controller")


def _ack(link: ControllerLink, msg) -> p2.ParamsAck:
    return link._request(msg)


def test_params_are_refused_mid_episode_and_applied_only_whole_and_checked(posix_firmware, tmp_path) -> None:
    config = load_hardware_config(robot_config(str(tmp_path / "robot.toml"), controller=True))
    with firmware_in_the_loop(posix_firmware, config.path, str(tmp_path / "loop")) as loop:
        link = ControllerLink(config, loop.host_port)
        n, crc0 = link.info.param_count, link.info.params_crc
        new = np.random.default_rng(0).standard_normal(n).astype(np.float32)
        episode = _start(link)
        link.transport.send(p2.Keepalive())
        assert _ack(link, p2.Params(0, new[:8])).status == p2.AckStatus.BUSY
        assert _ack(link, p2.ParamsCommit(n, params_crc(new))).status == p2.AckStatus.BUSY
        stop = link.transport.send(pr.SafeStop())
        frames = [link.transport.receive(time.perf_counter() + 2) for _ in range(2)]
        end = next(f.msg for f in frames if isinstance(f.msg, p2.EpisodeEnd))
        assert end.episode_seq == episode and end.status == p2.EndStatus.STOPPED and end.params_crc == crc0
        assert any(isinstance(f.msg, pr.State) and f.msg.cmd_seq == stop and f.msg.flags & 4 for f in frames)
        # Between episodes: chunks in order only, the whole vector, its CRC, finite values.
        assert _ack(link, p2.Params(0, new[:32])).status == p2.AckStatus.STAGED
        assert _ack(link, p2.Params(40, new[40:60])).status == p2.AckStatus.BAD_OFFSET
        assert _ack(link, p2.ParamsCommit(n, params_crc(new))).status == p2.AckStatus.INCOMPLETE
        for k in range(0, n, 32):
            assert _ack(link, p2.Params(k, new[k : k + 32])).status == p2.AckStatus.STAGED
        bad = _ack(link, p2.ParamsCommit(n, params_crc(new) ^ 1))
        assert bad.status == p2.AckStatus.BAD_CRC and bad.params_crc == crc0  # nothing applied
        nan = new.copy()
        nan[5] = np.nan
        for k in range(0, n, 32):
            _ack(link, p2.Params(k, nan[k : k + 32]))
        assert _ack(link, p2.ParamsCommit(n, params_crc(nan))).status == p2.AckStatus.NON_FINITE
        assert link.upload(new) is True and link.params_crc == params_crc(new)
        end = link.episode(5, 3, p2.START_STREAM | p2.START_UNPACED, lambda step: None)
        assert end.status == p2.EndStatus.COMPLETED and end.steps == 3 and end.params_crc == params_crc(new)
        assert link.upload(new) is False  # already there: nothing sent
        link.close()


def test_protocol_versions_refuse_each_other_cleanly(posix_firmware, tmp_path) -> None:
    v1_config = load_hardware_config(robot_config(str(tmp_path / "v1.toml")))
    quick = {"handshake_timeout_s = 10.0": "handshake_timeout_s = 0.6"}
    config = load_hardware_config(robot_config(str(tmp_path / "v2.toml"), controller=True, **quick))
    with emulator_process(v1_config.path, str(tmp_path / "emu")) as emu:  # the Python emulator speaks v1 only
        with pytest.raises(ProtocolVersionError, match="answers protocol version 1 only"):
            ControllerLink(config, emu.port)
    with firmware_in_the_loop(posix_firmware, config.path, str(tmp_path / "loop")) as loop:
        t = SerialTransport(loop.host_port, 1_000_000)
        t.open()
        future = pr.frame_bytes(3, pr.Hello(), 0, 0, pr.ENCODERS)  # a version this firmware does not speak
        t._io(lambda: t._write(future))
        frame = t.receive(time.perf_counter() + 2)  # v1 receiver: the v2 FAULT is a bad frame, not a message
        assert frame is None and t.counters.bad_frames == 1
        v2 = SerialTransport(loop.host_port, 1_000_000, encode=p2.encode, decoder=p2.frame_decoder)
        t.close()
        v2.open()
        v2._io(lambda: v2._write(future))
        fault = v2.receive(time.perf_counter() + 2).msg
        assert fault == pr.Fault(pr.FaultCode.VERSION, "this controller speaks protocol versions 1 and 2")
        v2.close()


def test_the_v1_watchdog_safe_stops_the_motors_when_commands_stop(posix_firmware, tmp_path) -> None:
    config = load_hardware_config(robot_config(str(tmp_path / "robot.toml")))
    with firmware_in_the_loop(posix_firmware, config.path, str(tmp_path / "loop")) as loop:
        t = SerialTransport(loop.host_port, 1_000_000, encode=p2.encode, decoder=p2.frame_decoder)
        t.open()
        t.send(pr.Reset(1), pr.encode)
        for _ in range(3):
            t.send(pr.Command(np.full(6, 0.5)), pr.encode)
        deadline = time.perf_counter() + 5
        msgs = []
        while not any(isinstance(m, pr.Fault) for m in msgs) and (f := t.receive(deadline)) is not None:
            msgs.append(f.msg)
        fault = next(m for m in msgs if isinstance(m, pr.Fault))
        assert fault.code == pr.FaultCode.WATCHDOG and fault.message.startswith("no valid command for ")
        t.send(p2.Status())
        report = t.receive(time.perf_counter() + 2).msg
        wd_us = round(config.safety.watchdog_s * 1e6)
        assert report.watchdog_trips == 1 and report.trip_us - report.feed_us >= wd_us
        commands = [r for r in read_plant_log(loop.plant_log) if "cmd" in r]
        assert [c["cmd"] for c in commands[-4:]] == [[0.5] * 6] * 3 + [[0.0] * 6]  # then the safe command
        assert commands[-1]["t_us"] >= report.trip_us  # written at the trip, on the controller's clock
        t.close()


def test_killing_the_host_mid_episode_safe_stops_the_motors(posix_firmware, tmp_path) -> None:
    config = robot_config(str(tmp_path / "robot.toml"), controller=True)
    report, commands, wd_us = kill_host_mid_episode(posix_firmware, config, str(tmp_path / "loop"))
    assert commands[-1]["cmd"] == [0.0] * 6 and any(c["cmd"] != [0.0] * 6 for c in commands)
    assert report.watchdog_trips == 1 and report.trip_us - report.feed_us >= wd_us
    # The safe command reached the plant at the trip (the controller's clock stamps every bus frame).
    assert commands[-1]["t_us"] >= report.trip_us
    assert all(c["t_us"] <= report.trip_us for c in commands[:-1])


SERVE = """
import sys
from metactl.emulator.firmware_loop import serve_firmware_in_the_loop
serve_firmware_in_the_loop(sys.argv[1], sys.argv[2], sys.argv[3], announce=lambda line: print(line, flush=True))
"""


def test_serving_the_arrangement_prints_where_to_connect_and_stops_on_sigterm(posix_firmware, tmp_path) -> None:
    """What ``metactl emulate --firmware`` runs: firmware + plant until a signal, the host's device announced."""
    config = robot_config(str(tmp_path / "robot.toml"), controller=True)
    cmd = [sys.executable, "-c", SERVE, posix_firmware, config, str(tmp_path / "work")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        port = re.search(r"connect the host to (\S+),", lines[1]).group(1)
        link = ControllerLink(load_hardware_config(config), port)
        assert link.info.robot_id == "serial_halfcheetah_fb" and "motor bus" in lines[0]
        link.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
