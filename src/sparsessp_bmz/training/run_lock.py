"""One run folder, one writer: an advisory lock held by the process that trains the run.

The lock is `fcntl.flock` on RUN/run.lock. The kernel releases it when its holder exits in any
way, kill -9 included, so a crashed run never leaves a lock behind that someone has to delete.
While it is held the file records who holds it (host, pid, SLURM job id, start time, as JSON), so
a second process that tries to train the same run fails at once with one line naming the holder,
and `matrix status` can say which job is running an entry.

A lock can outlive its holder in one case: processes forked by the holder (DataLoader workers)
share its open file and keep the flock until they exit too. When the record names a process of
this host that is gone, the lock is stale: the file is replaced by a new one (the orphans keep the
old one) and taken.

The lock file is never deleted on release (only emptied): deleting it would let a process that
opened the old file and a process that created a new one both hold "the" lock.
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
#: How long a writer waits for a lock held only by a `status` probe (it holds it for microseconds).
PROBE_WAIT_S = 1.0


@dataclass(frozen=True)
class LockHolder:
    """Who trains a run: what the lock file records while the lock is held."""

    host: str
    pid: int
    slurm_job_id: str | None
    started_at: str

    @classmethod
    def this_process(cls) -> LockHolder:
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            slurm_job_id=slurm_job_id(),
            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )

    def describe(self) -> str:
        job = f", SLURM job {self.slurm_job_id}" if self.slurm_job_id else ""
        return f"pid {self.pid} on {self.host}{job}, since {self.started_at}"

    def is_gone(self) -> bool:
        """Whether the holder is a process of this host that no longer exists."""
        if self.host != socket.gethostname():
            return False  # another machine's processes cannot be checked from here
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # exists, owned by another user
            return False
        return False


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
    """Not synced to disk: the record only matters while its holder lives (and the kernel's
    page cache is what other processes read)."""
    os.ftruncate(handle, 0)
    if holder is not None:
        os.pwrite(handle, json.dumps(asdict(holder)).encode("utf-8"), 0)


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


@contextlib.contextmanager
def run_lock(run_dir: Path, what: str = "train") -> Iterator[LockHolder]:
    """Hold the run's lock for the duration of the block; refuse at once when another holds it.

    `what` names the refused action in the error ("train", "evaluate", ...).
    """
    path = run_dir / LOCK_FILE
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = _open(path)
    deadline = time.monotonic() + PROBE_WAIT_S
    try:
        while not _try_flock(handle, fcntl.LOCK_EX):
            holder = _read_holder(handle)
            if holder is None and time.monotonic() < deadline:
                time.sleep(0.05)  # a status probe, or a writer that is still writing its record
                continue
            if holder is not None and holder.is_gone():
                # held by orphans of a dead holder: take a fresh file (module docstring)
                os.close(handle)
                path.unlink(missing_ok=True)
                handle = _open(path)
                continue
            who = holder.describe() if holder is not None else "another process"
            raise UserInputError(
                f"cannot {what} {run_dir}: its run is being trained by {who}; wait for it to "
                f"finish (`sparsessp-bmz matrix status` shows matrix entries) or stop that "
                f"process, then run again"
            )
        me = LockHolder.this_process()
        _write_holder(handle, me)
        try:
            yield me
        finally:
            _write_holder(handle, None)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)


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
