"""Write-then-rename, so an interrupted run never leaves a truncated file under the real name."""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary sibling of `path` for binary writing and rename it into place on success.

    The sibling lives in the same directory so the rename is atomic on one filesystem; on error it
    is removed and `path` keeps whatever it held before.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as handle:
            yield handle
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """`text` as UTF-8 under `path`, atomically."""
    with atomic_output(path) as handle:
        handle.write(text.encode("utf-8"))


def write_rows_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A CSV of `header` and `rows` (Unix line ends), atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, text.getvalue())


def write_records_csv(
    path: Path, fieldnames: Sequence[str], records: Iterable[Mapping[str, object]]
) -> None:
    """A CSV of dict records (missing keys left empty, Unix line ends), atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_text(path, text.getvalue())
