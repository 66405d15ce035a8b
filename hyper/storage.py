"""The study's durable storage, and the heartbeats that tell live trials from orphans.

The Optuna study in this storage is the single source of truth of a tuning job: the
driver asks trials from it, the Ray workers report to it and tell it the result, and
a rerun of the same command reads it to resume.

Storage URLs:

* ``sqlite:///path/to/study.db``: the default (``hyper/studies/<dataset>__<model>.db``);
  one machine, several processes;
* any URL of Optuna's ``RDBStorage`` (``postgresql://…``, ``mysql+pymysql://…``)
  for a cluster;
* ``journal:PATH``: Optuna's append-only journal file (``JournalFileBackend``), also
  safe on NFS;
* ``redis://…``: Optuna's journal on Redis.

SQLite and several writers: Python's sqlite3 opens a transaction only at the first
write, so Optuna's "read the trial's state, check it is RUNNING, write FAIL" is not
atomic, and a driver failing a stale trial could overwrite a COMPLETE told by a
worker in between. Every transaction therefore starts with ``BEGIN IMMEDIATE`` (take
the write lock first, wait up to a minute for it), and the database runs in WAL mode
(measured: 4 processes x 15 trials x 5 reports, 15 s instead of 34 s).

Heartbeats: a RUNNING trial is alive while its heartbeat (a trial system attribute,
so it works on every storage) is fresh. Its worker records it every
``heartbeat`` seconds, the driver that launched it too. A trial whose heartbeat is
older than the grace period was run by a process that died (a SIGKILLed driver, a
lost node); :func:`reclaim_stale` fails it and queues its parameters again. A trial
run by a live worker of another driver is never touched, so a rerun right after a
SIGKILL waits out the grace period for the orphans instead of failing them at once.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from bench.errors import InputError

HEARTBEAT_ATTR = "bench:heartbeat"
SQLITE_BUSY_TIMEOUT_S = 60


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; an :class:`InputError` if it cannot be opened."""
    try:
        if url.startswith("journal:"):
            return _journal_file(url[len("journal:"):])
        if url.startswith(("redis://", "rediss://")):
            from optuna.storages.journal import JournalRedisBackend, JournalStorage

            storage = JournalStorage(JournalRedisBackend(url))
            storage.get_all_studies()  # connects
            return storage
        if url.startswith("sqlite"):
            return _sqlite(url)
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except InputError:
        raise
    except ImportError as err:
        cause = err.__cause__ or err
        raise InputError(f"cannot open storage {url}: no database driver for it ({cause})") from None
    except Exception as err:  # noqa: BLE001  (sqlalchemy, redis, OS errors: one line for the user)
        cause = err.__cause__ or err
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise InputError(f"cannot open storage {url}: {message}") from None


def _engine_kwargs(url: str) -> dict:
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}}
    return {}


def _sqlite(url: str) -> optuna.storages.RDBStorage:
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:":
        raise InputError(f"storage {url}: an in-memory database cannot be shared with Ray workers; give a file")
    path = Path(database)
    if not path.parent.is_dir():
        raise InputError(f"cannot open storage {url}: directory {path.parent} does not exist")
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as connection:
        connection.execute("PRAGMA journal_mode=WAL")  # persistent: readers never block the writer
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}})

    @event.listens_for(storage.engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # pysqlite would BEGIN (deferred) by itself

    @event.listens_for(storage.engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    storage.engine.dispose()  # connections opened before the listeners must not be reused
    return storage


def _journal_file(path: str):
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

    file = Path(path)
    if not file.parent.is_dir():
        raise InputError(f"cannot open storage journal:{path}: directory {file.parent} does not exist")
    return JournalStorage(JournalFileBackend(str(file), lock_obj=JournalFileOpenLock(str(file))))


# -- heartbeats --------------------------------------------------------------------
def beat(storage, trial_id: int) -> bool:
    """Record that ``trial_id`` is alive; False once the trial is finished."""
    try:
        storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        return True
    except UpdateFinishedTrialError:
        return False


class Heartbeat:
    """Beats for one trial every ``interval`` seconds in a background thread, while in a ``with``."""

    def __init__(self, storage, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not beat(self.storage, self.trial_id):
                    return
            except Exception:  # noqa: BLE001  (a busy database: try again next beat)
                continue

    def __enter__(self) -> "Heartbeat":
        beat(self.storage, self.trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def last_sign_of_life(trial: FrozenTrial) -> float:
    """The later of the trial's last heartbeat and its start (a trial may die before its first beat)."""
    started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    return max(float(trial.system_attrs.get(HEARTBEAT_ATTR, 0.0)), started)


def reclaim_stale(study: optuna.Study, grace: float, skip: set[int], max_retry: int) -> list[int]:
    """Fail the RUNNING trials whose heartbeat is older than ``grace`` s and queue them again.

    ``skip`` holds the trial numbers this driver runs itself (it knows whether they
    live). Returns the numbers of the trials failed.
    """
    failed = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number in skip or now - last_sign_of_life(trial) <= grace:
            continue
        reason = f"no heartbeat for {now - last_sign_of_life(trial):.0f} s (its process died)"
        if fail_trial(study, trial.number, reason):
            failed.append(trial.number)
            requeue(study, study.get_trials(deepcopy=False)[trial.number], max_retry)
    return failed


def fail_trial(study: optuna.Study, number: int, reason: str) -> bool:
    """Mark a RUNNING trial FAIL with ``reason``; False if it finished meanwhile (nothing lost)."""
    trial_id = study.get_trials(deepcopy=False)[number]._trial_id
    try:
        study._storage.set_trial_user_attr(trial_id, "error", reason)
        study.tell(number, state=TrialState.FAIL)
        return True
    except (UpdateFinishedTrialError, ValueError, RuntimeError):
        return False


def requeue(study: optuna.Study, failed: FrozenTrial, max_retry: int) -> bool:
    """Queue the parameters of a trial whose process died, at most ``max_retry`` times.

    The same bookkeeping as Optuna's ``RetryHeartbeatStaleTrialCallback`` (system
    attributes ``failed_trial`` and ``retry_history``), without copying the dead
    trial's heartbeat and user attributes into the new one.
    """
    history = [*failed.system_attrs.get("retry_history", []), failed.number]
    if len(history) > max_retry:
        return False
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=failed.params, distributions=failed.distributions,
        system_attrs={"failed_trial": history[0], "retry_history": history},
    ))
    return True
