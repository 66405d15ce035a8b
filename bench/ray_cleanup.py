"""Ending what an earlier local Ray left behind (``bench clean``, and before every local start).

A ``bench run`` or ``bench tune`` driver killed with SIGKILL cannot shut its local Ray
down; its GCS and raylet go with it, but agents such as ``ray::DashboardAgent`` live on.
They are found by their session folder, never by name: a process that holds files open
under a Ray session folder (``<temp>/session_*``) whose session has no GCS server and
no raylet left is an orphan. Sessions in use (ours, a test's, a ``ray start`` cluster's)
keep their GCS and raylet, so they are never touched. Only Ray's own processes of this
user are considered (a ``ray::`` process title, or a program or script under Ray's
package): a driver such as a pytest or a notebook that started a local Ray and shut it
down may still hold a file of the ended session open, and it is not Ray's to end.
"""
from __future__ import annotations

import importlib.util
import os
import re
import signal
from dataclasses import dataclass
from functools import cache

import psutil

SESSION = re.compile(r"/session_\d{4}-\d\d-\d\d_[\d_-]+")


@dataclass(frozen=True)
class Orphan:
    pid: int
    name: str
    session: str


def _sessions_in(text: str) -> set[str]:
    return set(SESSION.findall(text))


@cache
def ray_package_dir() -> str | None:
    """Where Ray is installed, found without importing it (a second's import per call)."""
    spec = importlib.util.find_spec("ray")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return os.path.realpath(locations[0]) if locations else None


def is_ray_process(argv: list[str], package_dir: str | None) -> bool:
    """Whether a command line is one of Ray's own processes: a worker or agent renamed
    ``ray::...``, or a program (gcs_server, raylet) or script (agents, log monitor) that
    lives in Ray's package. A driver that merely imported Ray is not."""
    if argv and argv[0].startswith("ray::"):
        return True
    if package_dir is None:
        return False
    prefix = package_dir.rstrip("/") + "/"
    return any(arg.startswith(prefix) or os.path.realpath(arg).startswith(prefix)
               for arg in argv if arg.startswith("/"))


def find_orphans() -> list[Orphan]:
    """Ray's processes of this user that belong only to sessions whose GCS and raylet are gone."""
    me = os.getuid()
    package_dir = ray_package_dir()
    alive: set[str] = set()
    held: dict[int, tuple[str, set[str]]] = {}
    for proc in psutil.process_iter(["pid", "name", "cmdline", "uids"]):
        try:
            if proc.info["uids"] is None or proc.info["uids"].real != me or proc.pid == os.getpid():
                continue
            argv = proc.info["cmdline"] or []
            command = " ".join(argv)
            if "gcs_server" in command or "/raylet" in command:
                alive |= _sessions_in(command)
            if not is_ray_process(argv, package_dir):
                continue
            sessions = _sessions_in(command)
            for f in proc.open_files():
                sessions |= _sessions_in(f.path)
        except (psutil.Error, OSError):
            continue
        if sessions:
            held[proc.pid] = (proc.info["name"] or command.split(" ")[0], sessions)
    return [Orphan(pid, name, sorted(sessions)[0]) for pid, (name, sessions) in held.items()
            if not sessions & alive]


def end_orphans(grace_seconds: float = 3.0) -> list[Orphan]:
    """SIGTERM every orphan, SIGKILL what is left after ``grace_seconds``; returns them."""
    orphans = find_orphans()
    procs = []
    for orphan in orphans:
        try:
            proc = psutil.Process(orphan.pid)
            proc.send_signal(signal.SIGTERM)
            procs.append(proc)
        except psutil.Error:
            continue
    _, still = psutil.wait_procs(procs, timeout=grace_seconds)
    for proc in still:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return orphans


def add_arguments(parser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="list what would be ended; end nothing")


def main(args) -> int:
    orphans = find_orphans() if args.dry_run else end_orphans()
    verb = "would end" if args.dry_run else "ended"
    for orphan in orphans:
        print(f"{verb} {orphan.pid} {orphan.name} (Ray session {orphan.session.lstrip('/')} is gone)")
    if not orphans:
        print("no processes of an ended local Ray are left")
    return 0
