"""Ending what an earlier local Ray left behind (``bench clean``, and before every local start).

A ``bench run`` or ``bench tune`` driver killed with SIGKILL cannot shut its local Ray
down; its GCS and raylet go with it, but agents such as ``ray::DashboardAgent`` live on.
They are found by their session folder, never by name: a process that holds files open
under a Ray session folder (``<temp>/session_*``) whose session has no GCS server and
no raylet left is an orphan. Sessions in use (ours, a test's, a ``ray start`` cluster's)
keep their GCS and raylet, so they are never touched. Only this user's processes are
considered.
"""
from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass

import psutil

SESSION = re.compile(r"/session_\d{4}-\d\d-\d\d_[\d_-]+")


@dataclass(frozen=True)
class Orphan:
    pid: int
    name: str
    session: str


def _sessions_in(text: str) -> set[str]:
    return set(SESSION.findall(text))


def find_orphans() -> list[Orphan]:
    """Processes of this user that belong only to Ray sessions whose GCS and raylet are gone."""
    me = os.getuid()
    alive: set[str] = set()
    held: dict[int, tuple[str, set[str]]] = {}
    for proc in psutil.process_iter(["pid", "name", "cmdline", "uids"]):
        try:
            if proc.info["uids"] is None or proc.info["uids"].real != me or proc.pid == os.getpid():
                continue
            command = " ".join(proc.info["cmdline"] or [])
            if "gcs_server" in command or "/raylet" in command:
                alive |= _sessions_in(command)
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
