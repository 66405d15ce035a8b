"""`bench clean`'s orphan rule: only Ray's own processes of an ended session are ended.

The real thing (a SIGKILLed driver's agents) is checked in test_suite's slow test; here a
stand-in Ray package folder lets the rule be checked in a second, without starting Ray.
"""
from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from bench import ray_cleanup
from bench.ray_cleanup import is_ray_process

PACKAGE = "/venv/lib/python3.11/site-packages/ray"


@pytest.mark.parametrize("argv, expected", [
    (["ray::IDLE"], True),
    (["ray::DashboardAgent", ""], True),
    (["/usr/bin/python3", "-u", f"{PACKAGE}/dashboard/agent.py", "--node-ip-address=1"], True),
    ([f"{PACKAGE}/core/src/ray/raylet/raylet", "--raylet_socket_name=x"], True),
    (["/usr/bin/python3", "-m", "pytest", "tests"], False),  # a driver that imported Ray
    (["/usr/bin/python3", "/venv/lib/python3.11/site-packages/rayon/x.py"], False),  # a prefix, not the folder
    (["/usr/bin/python3", "notebook.py", "ray::IDLE"], False),  # only the process title counts
    ([], False),
])
def test_ray_process_is_a_ray_title_or_a_program_in_rays_package(argv, expected):
    assert is_ray_process(argv, PACKAGE) is expected


def test_without_ray_installed_only_a_ray_title_counts():
    assert is_ray_process(["ray::IDLE"], None)
    assert not is_ray_process([f"{PACKAGE}/dashboard/agent.py"], None)


HOLD = ("import sys, time\n"
        "f = open(sys.argv[1])\n"
        "print('holding', flush=True)\n"
        "time.sleep(60)\n")


def _hold(program, held_file):
    proc = subprocess.Popen([sys.executable, str(program), str(held_file)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_a_driver_holding_an_ended_sessions_file_survives_and_rays_agent_is_ended(tmp_path, monkeypatch):
    """A pytest or notebook that shut its local Ray down can still hold a file of the ended
    session open: it is not an orphan. Ray's agent holding the same file is."""
    package = tmp_path / "site-packages" / "ray"
    (package / "dashboard").mkdir(parents=True)
    agent_script = package / "dashboard" / "agent.py"
    agent_script.write_text(HOLD)
    driver_script = tmp_path / "driver.py"
    driver_script.write_text(HOLD)
    session = tmp_path / "ray" / "session_2026-12-06_03-20-00_123456_4242"  # no GCS, no raylet: ended
    (session / "logs").mkdir(parents=True)
    held_file = session / "logs" / "events.log"
    held_file.write_text("")
    monkeypatch.setattr(ray_cleanup, "ray_package_dir", lambda: str(package))

    driver = _hold(driver_script, held_file)
    agent = _hold(agent_script, held_file)
    try:
        orphans = {o.pid: o for o in ray_cleanup.find_orphans()}
        assert agent.pid in orphans and orphans[agent.pid].session.endswith("_4242")
        assert driver.pid not in orphans

        ended = {o.pid for o in ray_cleanup.end_orphans(grace_seconds=5)}
        assert agent.pid in ended and driver.pid not in ended
        assert agent.wait(timeout=10) is not None
        time.sleep(0.2)
        assert driver.poll() is None and psutil.Process(driver.pid).status() != psutil.STATUS_ZOMBIE
    finally:
        for proc in (driver, agent):
            proc.kill()
            proc.wait()
