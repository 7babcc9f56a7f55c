"""The model matrix: train and evaluate every (organelle, ratio, topology) of a YAML file.

Meant to run unattended for days on a cluster: finished entries are skipped (their run folders
say so), an entry that crashes is logged to its run folder and marked failed while the others go
on, and the end is always one summary table (CSV, markdown and a printed table). Running the same
command again retries only what failed or is unfinished. `run_entry` is what one entry runs,
whichever executor runs it (in this process, or as a SLURM array task: `executors`).
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.spec import SparsityRatio, Topology
from sparsessp_bmz.training.cluster import DEFAULT_MAX_REQUEUES, ClusterSettings
from sparsessp_bmz.training.config import (
    TrainConfig,
    apply_overrides,
    config_from_mapping,
    format_validation_error,
    load_raw,
)
from sparsessp_bmz.training.matrix_summary import EntryResult, fill_scores, write_summary

ERROR_LOG = "error.log"
#: The outcome of an entry whose run another process trains now (`run_lock.RunLocked`).
RUNNING_ELSEWHERE = "running elsewhere"


class MatrixSettings(BaseModel):
    """Which models to train: the cross product of organelles, ratios and topologies.

    Every entry starts from the `base` preset (relative to the matrix file), then `overrides`,
    then its own organelle, ratio and topology.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base: Path
    organelles: tuple[str, ...] = Field(min_length=1)
    ratios: tuple[SparsityRatio, ...] = Field(min_length=1)
    topologies: tuple[Topology, ...] = Field(min_length=1)
    overrides: tuple[str, ...] = ()
    evaluate: bool = Field(True, description="Score each model on whole volumes of `split`.")
    split: str = "test"
    summary_dir: Path | None = Field(
        None, description="Where the summary goes; default OUTPUT_DIR/matrix-<file name>."
    )
    cluster: ClusterSettings = Field(
        ClusterSettings(), description="Resources of the jobs of `matrix --executor slurm`."
    )


@dataclass(frozen=True)
class Entry:
    """One cell of the matrix; `config` is None when its config is invalid (`error` says why)."""

    organelle: str
    ratio: int
    topology: str
    config: TrainConfig | None
    error: str = ""


def load_matrix(
    path: Path, overrides: list[str] | None = None
) -> tuple[MatrixSettings, list[Entry]]:
    """The matrix settings and one entry per (organelle, ratio, topology), in file order."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(
            f"matrix file {path} does not exist; give a YAML like training/matrix.yaml"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        settings = MatrixSettings.model_validate(raw)
    except yaml.YAMLError as err:
        raise UserInputError(f"{path}: not valid YAML ({err})".replace("\n", " ")) from err
    except ValidationError as err:
        raise UserInputError(format_validation_error(err, str(path))) from err
    base = load_raw(path.parent / settings.base)
    common = [*settings.overrides, *(overrides or [])]
    entries = []
    for organelle, ratio, topology in itertools.product(
        settings.organelles, settings.ratios, settings.topologies
    ):
        own = [f"model.organelle={organelle}", f"model.ratio={ratio}", f"model.topology={topology}"]
        source = f"{path} entry {organelle}/r{ratio}/{topology}"
        try:
            config = config_from_mapping(apply_overrides(base, [*common, *own]), source)
        except UserInputError as err:
            entries.append(Entry(organelle, ratio, topology, None, str(err)))
            continue
        entries.append(Entry(organelle, ratio, topology, config))
    return settings, entries


def summary_dir(path: Path, settings: MatrixSettings, entries: list[Entry]) -> Path:
    if settings.summary_dir is not None:
        return settings.summary_dir
    output = next((e.config.trainer.output_dir for e in entries if e.config), Path("training/runs"))
    return output / f"matrix-{Path(path).stem}"


def run_entry(
    entry: Entry, settings: MatrixSettings, max_requeues: int = DEFAULT_MAX_REQUEUES
) -> EntryResult:
    """Train (and evaluate) one entry; any failure is recorded, not raised.

    Two exceptions pass: KeyboardInterrupt, and `Preempted` (the run stopped on SLURM's warning
    signal and its job was requeued at most `max_requeues` times: it is unfinished, not failed).
    An entry whose run another process holds is `RUNNING_ELSEWHERE`: not failed, nothing written
    into the folder it does not hold.
    """
    from sparsessp_bmz.training.preemption import Preempted
    from sparsessp_bmz.training.run import train
    from sparsessp_bmz.training.run_lock import RunLocked

    row = EntryResult(entry.organelle, entry.ratio, entry.topology)
    if entry.config is None:
        row.error = entry.error
        return row
    config = entry.config
    row.model_id = config.model.model_id
    row.run_dir = str(config.run_dir())
    log = config.run_dir() / ERROR_LOG
    try:
        result = train(config, max_requeues=max_requeues)
        row.status, row.steps, row.best_val_mse = (
            result.status,
            result.global_step,
            result.best_val_mse,
        )
        if settings.evaluate:
            fill_scores(row, config, result.best_checkpoint, settings.split)
        log.unlink(missing_ok=True)  # the failure of an earlier attempt is over
    except (KeyboardInterrupt, Preempted):
        raise
    except RunLocked as err:  # busy, not broken: its folder is the holder's, nothing is written
        row.status = RUNNING_ELSEWHERE
        row.error = f"{RUNNING_ELSEWHERE}: " + (
            err.holder.describe() if err.holder is not None else "another process"
        )
    except Exception as err:  # one broken entry must not stop a week-long matrix
        row.status = "failed"
        row.error = f"{type(err).__name__}: {err}".splitlines()[0]
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc(), encoding="utf-8")
    return row


def check_matrix_data(settings: MatrixSettings, entries: list[Entry]) -> None:
    """Open every manifest row that the unfinished entries will train, validate and score on,
    before any entry starts: bad data (an unknown organelle, an unreadable file, NaNs, a volume
    smaller than the patch, ...) is one UserInputError naming the entry and the row, and nothing
    is trained or written. Rows shared by several entries are read once."""
    from sparsessp_bmz.data.check import require_usable, training_rows
    from sparsessp_bmz.data.splits import rows_for
    from sparsessp_bmz.training.run import is_finished

    memo: dict = {}  # type: ignore[type-arg]
    for entry in entries:
        config = entry.config
        if config is None or is_finished(config):
            continue
        name = f"matrix entry {entry.organelle}/r{entry.ratio}/{entry.topology}"
        data = config.data_settings
        try:
            patch = config.model.patch
            require_usable(training_rows(data), data, "the matrix", patch=patch, memo=memo)
            if settings.evaluate:
                require_usable(
                    rows_for(data, settings.split, save=False), data, "the matrix", memo=memo
                )
        except UserInputError as err:
            raise UserInputError(f"{name}: {err}") from err


def data_problem(settings: MatrixSettings, entries: list[Entry]) -> str | None:
    """What `check_matrix_data` would refuse, as text (a dry run warns and goes on)."""
    try:
        check_matrix_data(settings, entries)
    except UserInputError as err:
        return str(err)
    return None


def run_matrix(
    path: Path,
    overrides: list[str] | None = None,
    on_entry: Callable[[Entry, int, int], None] | None = None,
) -> tuple[list[EntryResult], Path]:
    """Run every entry, write the summary, return the rows and the summary folder.

    SIGUSR1 stops the matrix: while an entry trains at the next step (`train`), elsewhere (data
    checks, scoring) once that entry is done, by raising `Preempted`; it never kills the process
    mid-write as its default action would.
    """
    from sparsessp_bmz.training.preemption import Preempted, preemption_guard

    settings, entries = load_matrix(path, overrides)
    rows = []
    with preemption_guard() as stop:
        check_matrix_data(settings, entries)
        for index, entry in enumerate(entries):
            if on_entry is not None:
                on_entry(entry, index, len(entries))
            rows.append(run_entry(entry, settings))
            if stop.received:
                raise Preempted(
                    f"stopped on SIGUSR1 after entry {index + 1} of {len(entries)}; run the same "
                    f"command again to go on (finished entries are skipped)"
                )
    out = summary_dir(path, settings, entries)
    write_summary(rows, out)
    return rows, out
