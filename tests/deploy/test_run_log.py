"""The run log a user opens in Foxglove: named signals, metadata and attachments, simulated time on unpaced runs,
and a log that survives a SIGKILL of ``metactl run`` (``metactl log check`` / ``recover``)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

from mcap.reader import make_reader

from metactl.deploy import run_online
from metactl.deploy.mcap_reader import read_messages


def test_an_unpaced_simulated_run_logs_simulated_time_and_names(fc_bundle, shipped_config, tmp_path) -> None:
    out = str(tmp_path / "run")
    run_online(fc_bundle, shipped_config("four_corners"), out_dir=out, seed=0)
    with open(os.path.join(out, "run.mcap"), "rb") as f:
        reader = make_reader(f)
        states = [(m.log_time, json.loads(m.data)) for _, _, m in reader.iter_messages(topics=["/state"])]
        ((name, meta),) = [(m.name, m.metadata) for m in reader.iter_metadata()]
        attachments = {a.name: a.data for a in reader.iter_attachments()}
    # four_corners: 0.1 s per step; every logged state 0.1 s of robot time after the one before, across episodes
    steps = [b - a for (a, _), (b, _) in itertools.pairwise(states)]
    assert set(steps) == {100_000_000}
    assert states[0][1]["obs"].keys() == {"x", "y"}
    assert name == "run" and json.loads(meta["observation_names"]) == ["x", "y"] and meta["link"] == "sim"
    assert json.loads(meta["versions"])["metactl"]
    assert json.loads(attachments["bundle/metadata.json"])["bundle_kind"] == "policy"
    assert b"[robot]" in attachments["sim_four_corners.toml"]


def test_a_killed_run_leaves_a_log_that_check_names_and_recover_completes(hc_bundle, tmp_path, short_config) -> None:
    """SIGKILL of ``metactl run`` while it paces in real time: at most the flush interval (0.25 s) of records is
    lost, ``log check`` says the log is cut (exit 2), and ``log recover`` rewrites it into an indexed log."""
    config = short_config("sim_halfcheetah_fb.toml", 200)  # 10 s episodes at 20 Hz
    out = tmp_path / "robot"
    cmd = [sys.executable, "-m", "metactl.cli", "run", "--bundle", hc_bundle, "--config", config, "--out", str(out),
           "--time-scale", "1", "--no-progress"]  # fmt: skip
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / "run.mcap"
    deadline = time.monotonic() + 120
    while not (log.exists() and log.stat().st_size > 20_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    killed_at = time.time_ns()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    check = subprocess.run([sys.executable, "-m", "metactl.cli", "log", "check", str(log)], capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert check.returncode == 2 and "without its summary and footer" in check.stderr
    fixed = tmp_path / "fixed.mcap"
    rec = subprocess.run([sys.executable, "-m", "metactl.cli", "log", "recover", str(log), "--out", str(fixed)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert rec.returncode == 0, rec.stderr
    with open(fixed, "rb") as f:
        reader = make_reader(f)
        times = [m.log_time for _, _, m in reader.iter_messages(topics=["/state"])]
    assert len(times) >= 20  # a second of 20 Hz states, at least
    assert killed_at - times[-1] < 1.0e9  # the newest state on disk is less than a second older than the kill
    ok = subprocess.run([sys.executable, "-m", "metactl.cli", "log", "check", str(fixed)], capture_output=True,
                        text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr


class Recorder:
    """A log sink that keeps what it is given (the interface the live view implements)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict, int]] = []
        self.names: dict = {}

    def log(self, topic: str, record: dict, t_ns: int) -> None:
        self.records.append((topic, record, t_ns))

    def name_fields(self, topic: str, field: str, names) -> None:
        self.names[(topic, field)] = list(names)


def test_observers_get_every_record_the_log_gets(fc_bundle, shipped_config, tmp_path) -> None:
    recorder = Recorder()
    run_online(fc_bundle, shipped_config("four_corners"), out_dir=str(tmp_path), observers=[recorder])
    logged = read_messages(str(tmp_path / "run.mcap"))
    seen: dict[str, int] = {}
    for topic, _, _ in recorder.records:
        seen[topic] = seen.get(topic, 0) + 1
    assert seen == {topic: len(records) for topic, records in logged.items()}
    assert recorder.names[("/state", "obs")] == ["x", "y"]
