"""The run lock under contention: a stale lock taken over by several processes at once has one
holder, and a lock file removed while held does not let a process that opened it before in."""

from __future__ import annotations

import fcntl
import itertools
import json
import multiprocessing
import os
import socket
import time
from pathlib import Path

from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.training.run_lock import LOCK_FILE, boot_id, current_holder, run_lock

HOLD_S = 0.6


def _contend(run_dir: Path, start: float, spans: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Try the lock at `start`; report the span it was held, if it was."""
    while time.time() < start:
        pass
    try:
        with run_lock(run_dir):
            began = time.monotonic()
            time.sleep(HOLD_S)
            spans.put((began, time.monotonic()))
    except UserInputError:
        spans.put(None)


def _stale_lock(run_dir: Path) -> int:
    """A lock file whose record names a dead process of this boot, flocked by a live orphan;
    returns the orphan's pid."""
    handle = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    record = dict(
        host=socket.gethostname(),
        pid=2**22 + 7,
        slurm_job_id=None,
        started_at="x",
        boot_id=boot_id(),
    )
    os.write(handle, json.dumps(record).encode())
    ready_r, ready_w = os.pipe()
    orphan = os.fork()
    if orphan == 0:
        fcntl.flock(handle, fcntl.LOCK_EX)
        os.write(ready_w, b"x")
        time.sleep(30)
        os._exit(0)
    os.read(ready_r, 1)
    os.close(handle)
    return orphan


def test_processes_taking_over_a_stale_lock_at_once_hold_it_one_at_a_time(tmp_path: Path) -> None:
    orphan = _stale_lock(tmp_path)
    try:
        context = multiprocessing.get_context("fork")
        spans = context.Queue()
        start = time.time() + 0.3
        workers = [
            context.Process(target=_contend, args=(tmp_path, start, spans)) for _ in range(4)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        held = sorted(span for span in (spans.get(timeout=5) for _ in workers) if span is not None)
    finally:
        os.kill(orphan, 9)
        os.waitpid(orphan, 0)
    assert held, "nobody took the stale lock over"
    for (_, end), (begin, _) in itertools.pairwise(held):
        assert end <= begin, f"two processes held the lock at once: {held}"


def test_a_lock_file_removed_while_held_is_not_taken_by_a_process_that_opened_it_before(
    tmp_path: Path,
) -> None:
    with run_lock(tmp_path):
        stale = os.open(tmp_path / LOCK_FILE, os.O_RDWR)  # a contender opened the file...
        (tmp_path / LOCK_FILE).unlink()  # ...then it was removed while held
    # the first holder is done; the contender now gets the flock of the removed file
    fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with run_lock(tmp_path) as second:
            assert current_holder(tmp_path) == second
            assert (tmp_path / LOCK_FILE).is_file()
    finally:
        os.close(stale)
