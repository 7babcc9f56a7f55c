"""One run folder, one writer: an advisory lock held by the process that trains the run.

The lock is `fcntl.flock` on RUN/run.lock. The kernel releases it when its holder exits in any
way, kill -9 included, so a crashed run never leaves a lock behind that someone has to delete.
While it is held the file records who holds it (host, boot, pid, SLURM job id, start time, as
JSON), so a second process that tries to train the same run fails at once with one line naming
the holder, and `matrix status` can say which job is running an entry.

The lock is the flock on the file that is at RUN/run.lock *now*: a process that got the flock on
a file that was replaced or removed meanwhile (it opened it before) lets it go and tries again.
That check and the writing of the holder record happen under a short guard lock
(RUN/run.lock.guard, never replaced), as does the one replacement below, so the two cannot
interleave.

A lock can outlive its holder in one case: processes forked by the holder (DataLoader workers)
share its open file and keep the flock until they exit too. When the record names a process of
this host and this boot that is gone, the lock is stale: under the guard, a fresh file is renamed
over it (the orphans keep the old one, nobody sees the path missing) and contended for anew.

The lock file is never deleted on release (only emptied).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from sparsessp_bmz.errors import UserInputError

LOCK_FILE = "run.lock"
GUARD_FILE = "run.lock.guard"
#: Changes at every boot of a Linux host: a pid of another boot says nothing about this one.
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
#: How long a writer waits for a lock held only by a `status` probe (it holds it for microseconds).
PROBE_WAIT_S = 1.0


class RunLocked(UserInputError):
    """Another process holds the run's lock: the run is not broken, it is busy (a matrix shows the
    entry as running elsewhere rather than failed)."""

    def __init__(self, message: str, holder: LockHolder | None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class LockHolder:
    """Who trains a run: what the lock file records while the lock is held."""

    host: str
    pid: int
    slurm_job_id: str | None
    started_at: str
    boot_id: str | None = None

    @classmethod
    def this_process(cls) -> LockHolder:
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            slurm_job_id=slurm_job_id(),
            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            boot_id=boot_id(),
        )

    def describe(self) -> str:
        job = f", SLURM job {self.slurm_job_id}" if self.slurm_job_id else ""
        return f"pid {self.pid} on {self.host}{job}, since {self.started_at}"

    def is_gone(self) -> bool:
        """Whether the holder is a process of this host and boot that no longer exists."""
        if self.host != socket.gethostname() or self.boot_id is None or self.boot_id != boot_id():
            return False  # another machine's (or boot's) processes cannot be checked from here
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # exists, owned by another user
            return False
        return False


def boot_id() -> str | None:
    """This boot of this host (Linux); None where the kernel does not say."""
    try:
        return BOOT_ID_FILE.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def slurm_job_id() -> str | None:
    """This process's SLURM job id; an array task as ARRAYJOB_TASK, as `squeue` shows it."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def _read_holder(handle: int) -> LockHolder | None:
    """The record in an open lock file; None when empty or half-written."""
    os.lseek(handle, 0, os.SEEK_SET)
    text = os.read(handle, 4096).decode("utf-8", errors="replace")
    try:
        return LockHolder(**json.loads(text))
    except (json.JSONDecodeError, TypeError):
        return None


def _write_holder(handle: int, holder: LockHolder | None) -> None:
    """Synced: on a shared file system other hosts read the record from the server."""
    os.ftruncate(handle, 0)
    if holder is not None:
        os.pwrite(handle, json.dumps(asdict(holder)).encode("utf-8"), 0)
    os.fsync(handle)


def _try_flock(handle: int, operation: int) -> bool:
    try:
        fcntl.flock(handle, operation | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _is_at(handle: int, path: Path) -> bool:
    """Whether the open file is the one at `path` now (not replaced, not removed)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(handle)
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


@contextlib.contextmanager
def _guard(run_dir: Path) -> Iterator[None]:
    """The guard lock: held for microseconds around each check-and-write (module docstring)."""
    handle = _open(run_dir / GUARD_FILE)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the flock


def _claim(handle: int, path: Path, me: LockHolder) -> bool:
    """With the flock on `handle` held: whether it is the lock (then the record names `me`)."""
    with _guard(path.parent):
        if not _is_at(handle, path):
            return False
        _write_holder(handle, me)
        return True


def _replace_stale(handle: int, path: Path) -> None:
    """Rename a fresh empty file over the lock file of a dead holder, if it still is that file
    and still stale (all checked under the guard)."""
    with _guard(path.parent):
        if not _is_at(handle, path) or _try_flock(handle, fcntl.LOCK_EX):
            return  # replaced already, or free after all: the caller's loop takes it
        holder = _read_holder(handle)
        if holder is None or not holder.is_gone():
            return
        fresh = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        os.close(_open(fresh))
        os.replace(fresh, path)


@contextlib.contextmanager
def run_lock(run_dir: Path, what: str = "train") -> Iterator[LockHolder]:
    """Hold the run's lock for the duration of the block; refuse at once when another holds it.

    `what` names the refused action in the error ("train", "evaluate", ...).
    """
    path = run_dir / LOCK_FILE
    run_dir.mkdir(parents=True, exist_ok=True)
    me = LockHolder.this_process()
    deadline = time.monotonic() + PROBE_WAIT_S
    while True:
        handle = _open(path)
        if _try_flock(handle, fcntl.LOCK_EX):
            if _claim(handle, path, me):
                break
            os.close(handle)  # the file was replaced or removed meanwhile: try the one there now
            continue
        holder = _read_holder(handle)
        if holder is not None and holder.is_gone():
            _replace_stale(handle, path)
            os.close(handle)
            continue
        os.close(handle)
        if holder is None and time.monotonic() < deadline:
            time.sleep(0.05)  # a status probe, or a writer that is still writing its record
            continue
        who = holder.describe() if holder is not None else "another process"
        raise RunLocked(
            f"cannot {what} {run_dir}: the run is in use (being trained or evaluated) by {who}; "
            f"wait for it to finish (`sparsessp-bmz matrix status` shows matrix entries) or "
            f"stop that process, then run again",
            holder,
        )
    try:
        yield me
    finally:
        try:
            _write_holder(handle, None)
        finally:
            os.close(handle)  # releases the flock


def current_holder(run_dir: Path) -> LockHolder | None:
    """Who holds the run's lock now (None: nobody), without disturbing a holder for long."""
    path = run_dir / LOCK_FILE
    try:
        handle = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if _try_flock(handle, fcntl.LOCK_SH):
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None
        holder = _read_holder(handle)
        if holder is None or holder.is_gone():
            return None
        return holder
    finally:
        os.close(handle)
