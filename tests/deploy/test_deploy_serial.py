"""The runtime over a real serial device (a pty) against the emulator in its own process.

Parity with the in-process simulator, fallback when no hardware answers, link loss mid-run
(stop and continue-in-sim), the robot's watchdog, SIGTERM, bad frames and config mismatches.
"""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
import tty

import numpy as np
import pytest
from conftest import CONFIG_DIR, REPO

from metactl.deploy import HardwareConfigError, load_hardware_config, run_online
from metactl.deploy import protocol as pr
from metactl.deploy.run_logger import read_log
from metactl.deploy.serial_robot import NoHardwareError, RobotFaultError, SerialRobot
from metactl.deploy.transport import SerialTransport
from metactl.emulator.launcher import emulator_process

SERIAL = os.path.join(CONFIG_DIR, "serial_halfcheetah_fb.toml")


def serial_config(tmp_path, **edits: str) -> str:
    """The shipped serial HalfCheetah config with 20-step episodes and ``edits`` (old text -> new text)."""
    with open(SERIAL) as f:
        text = f.read().replace("# episode_steps = 200", "episode_steps = 20")
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "robot.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def emulator(tmp_path):
    """Start an emulator for a config path; yields (device path, process-dir)."""
    procs = []

    def start(config_path: str, scenario: str | None = None) -> str:
        ctx = emulator_process(config_path, str(tmp_path / f"emu{len(procs)}"), scenario)
        procs.append(ctx)
        return ctx.__enter__().port

    yield start
    for ctx in procs:
        ctx.__exit__(None, None, None)


def test_runtime_over_the_pty_equals_the_in_process_simulator(hc_identity_bundle, shipped_config, emulator, tmp_path):
    config = serial_config(tmp_path)
    port = emulator(config)
    over_serial = run_online(hc_identity_bundle, config, port=port, seed=4, time_scale=20, out_dir=str(tmp_path / "o"))
    sim_cfg = load_hardware_config(shipped_config("halfcheetah_fb"))
    in_process = run_online(hc_identity_bundle, sim_cfg, seed=4)
    assert over_serial.link["link"] == "serial" and over_serial.status == "completed"
    # Same physics, same seeds, float32 on the wire as in the graph: the same returns.
    got = [e.episode_return for e in over_serial.episodes]
    want = [e.episode_return for e in in_process.episodes]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert over_serial.health["link_counters"]["bad_frames"] == 0
    assert over_serial.health["link_counters"]["missing_frames"] == 0
    log = read_log(str(tmp_path / "o" / "run.mcap"))
    assert len(log["/state"]) == sum(e.length for e in over_serial.episodes)
    assert [r["episode_return"] for r in log["/adaptation"]] == pytest.approx(got)


def test_no_hardware_runs_on_the_fallback_simulation_loudly(hc_identity_bundle, shipped_config, tmp_path, capfd):
    config = serial_config(tmp_path, **{"handshake_timeout_s = 1.0": "handshake_timeout_s = 0.3"})
    report = run_online(hc_identity_bundle, config, port=str(tmp_path / "no_such_device"), seed=4, time_scale=0)
    assert report.link["link"] == "sim" and report.status == "completed"
    assert next(e["event"] for e in report.events if e["topic"] == "/link") == "switch_to_sim"
    assert "NO HARDWARE" in capfd.readouterr().err
    in_process = run_online(hc_identity_bundle, load_hardware_config(shipped_config("halfcheetah_fb")), seed=4)
    assert report.pre_adaptation_return == in_process.pre_adaptation_return


def test_no_hardware_without_fallback_is_a_clear_error(hc_identity_bundle, tmp_path):
    text = open(serial_config(tmp_path)).read()
    fallback = text[text.index("[fallback]") : text.index("[emulator]")]
    path = tmp_path / "nofallback.toml"
    path.write_text(text.replace(fallback, ""))
    with pytest.raises(NoHardwareError, match=r"cannot open .*add a \[fallback\] section"):
        run_online(hc_identity_bundle, str(path), port=str(tmp_path / "nothing"))


def test_a_line_of_garbage_is_no_hardware(tmp_path):
    master, slave = pty.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def babble() -> None:
        rng = np.random.default_rng(0)
        while not stop.is_set():
            os.write(master, bytes([0]) + rng.integers(1, 256, 40, dtype=np.uint8).tobytes() + bytes([0]))
            time.sleep(0.005)

    thread = threading.Thread(target=babble, daemon=True)
    thread.start()
    config = load_hardware_config(serial_config(tmp_path, **{"handshake_timeout_s = 1.0": "handshake_timeout_s = 0.3"}))
    try:
        with pytest.raises(NoHardwareError, match=r"no robot answered .* bad frames"):
            SerialRobot(config, port=os.ttyname(slave))
    finally:
        stop.set()
        thread.join()
        os.close(master)
        os.close(slave)


def test_handshake_mismatch_names_what_differs(tmp_path, emulator):
    port = emulator(serial_config(tmp_path))
    other = load_hardware_config(
        serial_config(
            tmp_path, **{'name = "serial_halfcheetah_fb"': 'name = "other_bot"', "period_s = 0.05": "period_s = 0.02"}
        )
    )
    with pytest.raises(
        HardwareConfigError, match=r"reports robot id 'serial_halfcheetah_fb' .*control period 50000 us"
    ):
        SerialRobot(other, port=port)


@pytest.mark.parametrize("on_loss", ["stop", "sim"])
def test_killing_the_emulator_mid_run(hc_identity_bundle, tmp_path, on_loss):
    config = serial_config(tmp_path, **{'on_link_loss = "stop"': f'on_link_loss = "{on_loss}"'})
    out = str(tmp_path / "out")
    with emulator_process(config, str(tmp_path / "emu")) as emu:
        killer = threading.Timer(1.5, os.kill, (emu.pid, signal.SIGKILL))  # start-up ramp ~0.55 s, episode 1 s
        killer.start()
        report = run_online(hc_identity_bundle, config, port=emu.port, out_dir=out, time_scale=1)
        killer.join()
    faults = [e for e in report.events if e["topic"] == "/fault" and e["source"] == "runtime"]
    assert [f["code"] for f in faults] == ["link_lost"]
    log = read_log(os.path.join(out, "run.mcap"))
    assert [r["code"] for r in log["/fault"] if r["source"] == "runtime"] == ["link_lost"]
    if on_loss == "stop":
        assert report.status == "link_lost" and report.exit_code == 3 and report.link["link"] == "serial"
    else:
        assert report.status == "completed" and report.link["link"] == "sim"
        assert [r["event"] for r in log["/link"]][-1] == "switch_to_sim"
        assert len(log["/adaptation"]) == len(report.episodes)


def test_the_robot_watchdog_stops_a_stalled_host(tmp_path, emulator):
    config = load_hardware_config(serial_config(tmp_path))
    with SerialRobot(config, port=emulator(config.path)) as robot:
        robot.reset(0)
        robot.write_command(np.zeros(6))
        time.sleep(config.safety.watchdog_s + 0.2)  # the host stalls
        robot.write_command(np.zeros(6))
        with pytest.raises(RobotFaultError, match="safe-stopped its motors: no valid command for"):
            robot.read_state()
        assert robot.faults[0][1] == pr.FaultCode.WATCHDOG


def test_sigterm_safe_stops_the_robot_and_closes_the_log(hc_identity_bundle, tmp_path):
    config = serial_config(tmp_path)
    out = tmp_path / "out"
    with emulator_process(config, str(tmp_path / "emu")) as emu:
        port = emu.port
        cmd = [sys.executable, "-m", "metactl.cli", "run", "--bundle", hc_identity_bundle, "--config", config,
               "--port", port, "--out", str(out), "--time-scale", "1"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
        time.sleep(4.0)  # start-up (imports, handshake) then a few paced steps
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    emulator_log = open(tmp_path / "emu" / "emulator.log").read()
    assert int(re.search(r"\|\s+safe_stops \|\s+(\d+) \|", emulator_log).group(1)) >= 1, emulator_log
    log = read_log(str(out / "run.mcap"))
    assert log["/state"] and log["/link"][0]["event"] == "open"


def test_bad_frames_are_counted_and_skipped(tmp_path):
    master, slave = pty.openpty()
    tty.setraw(slave)
    transport = SerialTransport(os.ttyname(slave), 115200)
    transport.open()
    try:
        good = [pr.encode(pr.Heartbeat(), seq, 0) for seq in range(3)]
        corrupt = bytearray(good[1])
        corrupt[5] ^= 0x40
        os.write(master, b"\x13\x37garbage" + good[0] + bytes(corrupt) + good[2] + b"\x00" * 3)
        frames = [transport.receive(time.perf_counter() + 1.0) for _ in range(2)]
        assert [f.seq for f in frames] == [0, 2]
        c = transport.counters
        assert (c.bad_frames, c.missing_frames, c.received) == (2, 1, 2)  # garbage + corrupt; seq 1 missing
    finally:
        transport.close()
        os.close(master)
        os.close(slave)


def test_the_emulator_also_serves_a_pyserial_url(tmp_path):
    config = load_hardware_config(serial_config(tmp_path))
    port_file = tmp_path / "url"
    cmd = [sys.executable, "-m", "metactl.cli", "emulate", "--config", config.path, "--listen", "tcp://127.0.0.1:0",
           "--port-file", str(port_file)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not port_file.exists():
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.02)
        url = port_file.read_text().strip()
        assert url.startswith("socket://127.0.0.1:")
        with SerialRobot(config, port=url) as robot:
            robot.reset(1)
            sent = robot.write_command(np.full(6, 0.5))
            assert robot.read_state().obs.shape == (17,) and np.allclose(sent, 0.5)
            assert robot.counters()["bad_frames"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_link_lost_during_start_up_stops_safely(hc_identity_bundle, tmp_path):
    config = serial_config(tmp_path, **{"startup_steps = 10": "startup_steps = 400"})  # a 20 s ramp
    with emulator_process(config, str(tmp_path / "emu")) as emu:
        killer = threading.Timer(1.0, os.kill, (emu.pid, signal.SIGKILL))
        killer.start()
        report = run_online(hc_identity_bundle, config, port=emu.port, out_dir=str(tmp_path / "out"), time_scale=1)
        killer.join()
    assert report.status == "link_lost" and report.exit_code == 3 and report.episodes == ()
    log = read_log(str(tmp_path / "out" / "run.mcap"))
    assert [r["code"] for r in log["/fault"]] == ["link_lost"]


@pytest.fixture
def lossy_emulator(tmp_path):
    """An in-process emulator whose ``drop`` set says which commands after a RESET lose their answer."""
    from metactl.emulator.server import Server

    config = load_hardware_config(serial_config(tmp_path))
    server = Server(config)
    handle, seen = server.firmware.handle, {"n": 0, "rewards": [], "drop": set()}

    def lossy(frame, now):
        out = handle(frame, now)
        if isinstance(frame.msg, pr.Reset):
            seen["n"], seen["rewards"] = 0, []
        elif isinstance(frame.msg, pr.Command):
            seen["n"] += 1
            seen["rewards"].append(server.firmware._reward)
            if seen["n"] in seen["drop"]:
                return []  # this answer is lost on the line
        return out

    server.firmware.handle = lossy
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield config, server, seen
    server.stop()
    thread.join()


def test_a_lost_answer_is_a_missed_step_not_a_reward_counted_twice(lossy_emulator):
    from metactl.deploy.session import PolicyController, RobotSession

    config, server, seen = lossy_emulator
    seen["drop"] = {5}
    act = lambda obs, p: 0.3 * np.sin(obs[:6])  # noqa: E731
    with RobotSession(config, port=server.address, time_scale=0) as session:
        ret, length = session.episode(PolicyController(act, None), 7, 10)
    assert length == 10 and session.missed_steps == 1
    # Every reward but the lost 5th, once each.
    assert ret == pytest.approx(sum(seen["rewards"]) - seen["rewards"][4], abs=1e-9)


def test_the_emulator_watchdog_runs_with_no_tcp_host(tmp_path):
    from metactl.emulator.server import Server

    config = load_hardware_config(serial_config(tmp_path))
    server = Server(config, listen="tcp://127.0.0.1:0")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        robot = SerialRobot(config, port=server.address)
        robot.reset(0)
        robot.write_command(np.full(6, 0.8))
        robot.read_state()
        robot.transport.close()  # the host dies mid-episode, without a SAFE_STOP
        deadline = time.monotonic() + 10 * config.safety.watchdog_s
        while server.firmware.stats.watchdog_trips == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.firmware.stats.watchdog_trips == 1 and server.firmware.next_deadline is None
    finally:
        server.stop()
        thread.join()
