"""Checkpoints written whole or not at all, with the previous `last.ckpt` kept as a fallback.

Lightning writes a checkpoint straight to its final name, so a full disk or a kill during the
write left a truncated best.ckpt or last.ckpt behind. `AtomicCheckpointIO` writes a temporary
sibling (same folder, so the rename is atomic on one filesystem), flushes it to disk and
`os.replace`s it onto the final name: the final name always holds a complete checkpoint, the old
one or the new one.

For the names in `keep_previous` (the run's last.ckpt) the checkpoint being replaced is first
renamed to `<stem>.previous.ckpt`. It is the epoch-end checkpoint before the current one, of the
same run, so `training.run` can resume from it bit-identically when last.ckpt turns out to be
damaged (or missing, when a kill fell between the two renames). The price is one more checkpoint
on disk per run.

Any OSError while writing (ENOSPC: no space left, EACCES, EROFS, ...) leaves no temporary file and
becomes one UserInputError that says which file could not be written and how to go on.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from sparsessp_bmz.errors import UserInputError

#: Suffix of the checkpoint a kept-previous name held before its latest save.
PREVIOUS_SUFFIX = ".previous.ckpt"


def previous_path(path: Path) -> Path:
    """Where the checkpoint that `path` held before its latest save is kept (last.previous.ckpt)."""
    return path.with_name(path.stem + PREVIOUS_SUFFIX)


def partial_path(path: Path) -> Path:
    """The temporary sibling a checkpoint is written to before it is renamed onto `path`."""
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


def write_error(path: Path, err: OSError) -> UserInputError:
    """The one-line message for a checkpoint (or run file) that could not be written."""
    if err.errno == errno.ENOSPC:
        why = "no space left on the device"
        fix = f"free space on the disk of {path.parent}"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"no permission to write there ({err.strerror})"
        fix = f"make {path.parent} writable or choose another trainer.run_dir/output_dir"
    else:
        why = err.strerror or str(err)
        fix = f"check the disk of {path.parent}"
    return UserInputError(
        f"cannot write {path}: {why}; nothing was saved under that name (the file there, if "
        f"any, is the previous complete one). {fix[0].upper()}{fix[1:]} and run the same command "
        f"again: training resumes from the last complete checkpoint"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO that writes to a temporary name and renames it into place."""

    def __init__(self, keep_previous: Iterable[str] = ()) -> None:
        super().__init__()
        self.keep_previous = frozenset(keep_previous)

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        final = Path(path)
        partial = partial_path(final)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            # serialised in memory first (as Lightning does), so a failing write is a plain
            # OSError from the file, not an error of torch's zip writer
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            with partial.open("wb") as handle:
                handle.write(buffer.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())
            if final.name in self.keep_previous and final.is_file():
                os.replace(final, previous_path(final))
            os.replace(partial, final)
        except OSError as err:
            raise write_error(final, err) from err
        finally:
            partial.unlink(missing_ok=True)
