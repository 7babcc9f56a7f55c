"""Many inputs in one call: expand files, folders, globs and manifests into jobs (input ->
output), predict each file slab by slab into its writer, skip finished outputs, and go on past a
failing file.

Output names mirror input names (`cell_07.czi` -> `OUT/cell_07.ome.tif`); a finished output is
never half-written (writers rename on success), so an existing output means a finished one and is
skipped on a re-run. The network is compiled for the latest window shape and reused by every
file of that shape.
"""

from __future__ import annotations

import contextlib
import glob
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict

from sparsessp_bmz import guards
from sparsessp_bmz.data.simulate.writer import MASKS_SUFFIX
from sparsessp_bmz.errors import UserInputError
from sparsessp_bmz.imageio import (
    TIFF_SUFFIXES,
    ZARR_SUFFIXES,
    OmeZarrOutput,
    expected_sparse_shape,
    is_zarr_name,
    open_prediction_input,
    write_ome_tiff,
)
from sparsessp_bmz.predict.defaults import DEFAULT_OVERLAP, default_window
from sparsessp_bmz.predict.models import PredictionModel
from sparsessp_bmz.predict.runners import Engine, WindowFn
from sparsessp_bmz.predict.slabs import place, predict_slabs, prediction_bytes, window_runs
from sparsessp_bmz.predict.windows import Overlap, WindowPlan, plan_windows, resolve_window
from sparsessp_bmz.spec import ModelSpec

#: Image files a folder input contributes (OME-Zarr folders by their name).
IMAGE_SUFFIXES = (*TIFF_SUFFIXES, ".czi", *ZARR_SUFFIXES)
OutputFormat = Literal["ome-tiff", "ome-zarr"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
OUTPUT_SUFFIX: dict[str, str] = {"ome-tiff": ".ome.tif", "ome-zarr": ".ome.zarr"}


@dataclass(frozen=True)
class Job:
    """One input file, the TL channel to read from it, and where its prediction goes."""

    input: Path
    channel: int
    output: Path


class PredictOptions(BaseModel):
    """How every file of one call is read and predicted (checked by the command line first)."""

    model_config = ConfigDict(frozen=True)

    dense_phase: int | None = None
    overlap: Overlap = DEFAULT_OVERLAP
    batch_size: int = 1
    window: tuple[int, int, int] | None = None
    voxel_size_um: tuple[float, float, float] | None = None
    device: str = "cpu"
    engine: Engine = "onnx"
    time: int | None = None


def _is_image(path: Path) -> bool:
    """An image a folder or glob contributes: not hidden, and not the label image the simulator
    writes beside each field (`cell_0000.masks.ome.tif` holds true objects, not TL)."""
    name = path.name.lower()
    return (
        name.endswith(IMAGE_SUFFIXES)
        and not name.startswith(".")
        and not name.endswith(MASKS_SUFFIX)
    )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def expand_inputs(arguments: Sequence[Path | str], channel: int) -> list[tuple[Path, int]]:
    """(file, TL channel) of every input: files as given, a folder's image files (sorted, not
    recursive), a glob's matches, a manifest CSV's signal images (its channel_signal)."""
    found: list[tuple[Path, int]] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir() and not is_zarr_name(path):
            images = sorted(p for p in path.iterdir() if _is_image(p))
            if not images:
                raise UserInputError(
                    f"input folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})"
                )
            found += [(p, channel) for p in images]
        elif path.suffix.lower() == ".csv" and path.is_file():
            found += manifest_signals(path)
        elif path.exists():
            found.append((path, channel))
        elif glob.has_magic(str(argument)):
            matches = sorted(Path(p) for p in glob.glob(str(argument)) if _is_image(Path(p)))
            if not matches:
                raise UserInputError(f"input pattern {argument} matches no image file")
            found += [(p, channel) for p in matches]
        else:
            raise UserInputError(f"input {path} does not exist; give the path of a TL z-stack")
    return list(dict.fromkeys(found))


def manifest_signals(manifest: Path) -> list[tuple[Path, int]]:
    """(TL image, channel) of every row of a manifest CSV (either layout of `data.manifest`).

    Only what prediction needs is read: targets, structures and splits are not, and a TL image
    that does not exist is not checked here but fails its own job, so one bad row does not stop
    the others (`data.manifest.read_manifest` checks every file, as training needs them all).
    """
    from sparsessp_bmz.data.manifest import channel, read_records

    manifest_records = read_records(manifest)
    column = manifest_records.signal_column
    found = []
    for record in manifest_records.records:
        where = record.where(manifest_records.manifest)
        value = (record.fields.get(column) or "").strip()
        if not value:
            raise UserInputError(f"{where}: {column} is empty; give a path relative to the CSV")
        index = channel(record.fields.get("channel_signal") or "0", "channel_signal", where)
        found.append(((manifest_records.manifest.parent / value).resolve(), index))
    return list(dict.fromkeys(found))


def plan_jobs(
    inputs: Sequence[tuple[Path, int]], out_dir: Path, fmt: OutputFormat | None = None
) -> list[Job]:
    """One job per input, its output named after it inside `out_dir` in format `fmt` (None:
    OME-Zarr for an OME-Zarr input, else OME-TIFF); two inputs that would write one output are
    refused before any work."""

    def suffix(path: Path) -> str:
        return OUTPUT_SUFFIX[fmt or ("ome-zarr" if is_zarr_name(path) else "ome-tiff")]

    jobs = [Job(p, c, out_dir / f"{_stem(p)}{suffix(p)}") for p, c in inputs]
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.output in seen:
            raise UserInputError(
                f"inputs {seen[job.output]} and {job.input} would both be written to "
                f"{job.output}; predict them into different output folders"
            )
        seen[job.output] = job.input
    return jobs


@dataclass(frozen=True)
class FileResult:
    """A written prediction: its shape, voxel size, and whether the input was resampled."""

    shape: tuple[int, int, int]
    voxel_size_um: tuple[float, float, float]
    resampled: bool


@dataclass(frozen=True)
class Outcome:
    """What happened to one job: written, skipped (finished before) or failed (with why)."""

    job: Job
    status: Literal["written", "skipped", "failed"]
    detail: str = ""
    seconds: float = 0.0


class Runners:
    """The compiled network of the latest window shape, reused by the files that share it (a
    folder of equal fields compiles once); a field of another shape replaces it, so compiled
    sessions do not pile up over a call."""

    def __init__(self, model: PredictionModel, options: PredictOptions) -> None:
        self.model = model
        self.options = options
        self.stack = contextlib.ExitStack()  # holds the current runner only
        self.window: tuple[int, int, int] | None = None
        self.run: WindowFn | None = None

    def __call__(self, input_window: tuple[int, int, int]) -> WindowFn:
        if self.run is None or input_window != self.window:
            self.stack.close()
            self.run = self.stack.enter_context(
                self.model.runner(
                    input_window,
                    batch_size=self.options.batch_size,
                    device=self.options.device,
                    engine=self.options.engine,
                )
            )
            self.window = input_window
        return self.run


#: Added to a memory refusal of a resampled input: a wrong voxel size is the usual cause.
RESAMPLED_NOTE = " resampled to the model's grid; check the file's voxel size or --voxel-size"


def checked_plan(
    spec: ModelSpec,
    options: PredictOptions,
    shape: tuple[int, int, int],
    *,
    input_in_memory: bool,
    output_in_memory: bool,
    resampled: bool,
) -> WindowPlan:
    """The window plan of a sparse field of `shape`, refused (`UserInputError`) when predicting
    it would need more memory than the limit in force."""
    input_window = resolve_window(spec, options.window or default_window(spec, shape))
    plan = plan_windows(shape, input_window, options.overlap)
    out_shape = (spec.ratio * shape[0], shape[1], shape[2])
    guards.check_memory(
        prediction_bytes(
            plan,
            spec.ratio,
            options.batch_size,
            width=spec.width,
            input_in_memory=input_in_memory,
            output_in_memory=output_in_memory,
        ),
        f"predicting a {'x'.join(map(str, shape))} sparse stack "
        f"(output {'x'.join(map(str, out_shape))}){RESAMPLED_NOTE if resampled else ''}",
        "crop the input into smaller fields, lower --batch-size or --window, or read and write "
        "OME-Zarr (.ome.zarr), which needs only one slab of windows in memory",
    )
    return plan


def predict_file(
    model: PredictionModel,
    job: Job,
    options: PredictOptions,
    runners: Callable[[tuple[int, int, int]], WindowFn],
    *,
    on_plan: Callable[[int], None] = lambda windows: None,
    advance: Callable[[int], None] = lambda n: None,
) -> FileResult:
    """Predict one file into `job.output`. OME-Zarr outputs are written region by region (memory
    bounded by a band's slab); OME-TIFF outputs are assembled in memory. An input that is read
    whole is checked against the memory limit from its metadata before it is decoded."""
    spec = model.trained.spec
    zarr = is_zarr_name(job.output)
    if not is_zarr_name(job.input):  # read whole: refused before it is decoded if too large
        expected = expected_sparse_shape(
            job.input,
            ratio=spec.ratio,
            model_voxel_size_um=model.trained.voxel_size_um,
            dense_phase=options.dense_phase,
            fallback_voxel_size_um=options.voxel_size_um,
        )
        if expected is not None:
            checked_plan(
                spec,
                options,
                expected.sparse_shape,
                input_in_memory=True,
                output_in_memory=not zarr,
                resampled=expected.resampled,
            )
    field = open_prediction_input(
        job.input,
        ratio=spec.ratio,
        model_voxel_size_um=model.trained.voxel_size_um,
        channel=job.channel,
        dense_phase=options.dense_phase,
        fallback_voxel_size_um=options.voxel_size_um,
        time=options.time,
    )
    source = field.sparse
    shape = source.shape  # type: ignore[attr-defined]
    plan = checked_plan(
        spec,
        options,
        shape,
        input_in_memory=field.in_memory,
        output_in_memory=not zarr,
        resampled=field.resampled,
    )
    input_window = plan.input_window
    out_shape = (spec.ratio * shape[0], shape[1], shape[2])
    run = runners(input_window)
    on_plan(window_runs(plan))
    slabs = predict_slabs(
        run, source, plan, spec.ratio, batch_size=options.batch_size, advance=advance
    )  # type: ignore[arg-type]
    if zarr:
        with OmeZarrOutput(job.output, out_shape, field.output_voxel_size_um) as output:
            for slab in slabs:
                output.write_region(slab.y0, slab.x0, slab.data)
    else:
        volume = np.empty(out_shape, dtype=np.float32)
        for slab in slabs:
            place(volume, slab)
        write_ome_tiff(job.output, volume, field.output_voxel_size_um)
    return FileResult(out_shape, field.output_voxel_size_um, field.resampled)


def predict_jobs(
    model: PredictionModel,
    jobs: Sequence[Job],
    options: PredictOptions,
    *,
    progress: bool = False,
) -> list[Outcome]:
    """Predict every job (skipping finished outputs), one failing file not stopping the rest.

    An engine the model cannot run is refused before any input is read (`UserInputError`). Bad
    input of one file and errors while predicting it are recorded in its outcome; an
    interruption (Ctrl-C) stops the call and leaves no partial output.
    """
    model.check_engine(options.engine, options.device)  # a model error stops the call once
    outcomes: list[Outcome] = []
    runners = Runners(model, options)
    with progress_bars(progress, len(jobs)) as (next_file, on_plan, advance), runners.stack:
        for job in jobs:
            next_file(job.input.name)
            if job.output.exists():
                outcomes.append(Outcome(job, "skipped", "output exists (finished before)"))
                continue
            start = time.perf_counter()
            try:
                done = predict_file(model, job, options, runners, on_plan=on_plan, advance=advance)
            except UserInputError as err:
                outcomes.append(Outcome(job, "failed", str(err)))
                continue
            except Exception as err:  # one broken file must not stop a plate of fields
                outcomes.append(Outcome(job, "failed", f"{type(err).__name__}: {err}"))
                continue
            outcomes.append(
                Outcome(job, "written", "x".join(map(str, done.shape)), time.perf_counter() - start)
            )
    return outcomes


@contextlib.contextmanager
def progress_bars(
    enabled: bool, files: int
) -> Iterator[tuple[Callable[[str], None], Callable[[int], None], Callable[[int], None]]]:
    """(next_file(name), on_plan(windows), advance(n)) of one rich progress display: a bar over
    files and a bar over the windows of the current file (no-ops when disabled)."""
    if not enabled:
        yield (lambda name: None), (lambda windows: None), (lambda n: None)
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        file_task = bar.add_task("files", total=files)
        window_task = bar.add_task("windows", total=None)
        started = [False]

        def next_file(name: str) -> None:
            if started[0]:
                bar.advance(file_task)
            started[0] = True
            bar.update(file_task, description=f"files ({name})")
            bar.reset(window_task, total=None)  # a skipped file shows no stale windows

        def on_plan(windows: int) -> None:
            bar.reset(window_task, total=windows)

        yield next_file, on_plan, lambda n: bar.advance(window_task, n)
        bar.update(file_task, completed=files)
