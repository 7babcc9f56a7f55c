"""`matrix export`: every finished entry of a matrix as validated bioimage.io packages.

The same export as `sparsessp-bmz export RUN/checkpoints/best.ckpt` (`bmz.export.export`), for
each entry whose run finished; unfinished ones are listed, not waited for. On SLURM this runs as
one job that starts when the matrix's arrays have ended (`executors.submit_export`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sparsessp_bmz.training.matrix import Entry, load_matrix


@dataclass(frozen=True)
class ExportRequest:
    """What to export where: picklable, so a SLURM job can carry it."""

    matrix: Path
    overrides: tuple[str, ...] = ()
    out: Path = Path("packages")
    variants: str | None = None
    metadata: Path | None = None


@dataclass
class MatrixExport:
    """Archives that passed, failures (one line each), and the entries that were not finished."""

    archives: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)


def export_matrix(
    request: ExportRequest, on_entry: Callable[[Entry], None] | None = None
) -> MatrixExport:
    """Export and validate the best checkpoint of every finished entry of `request.matrix`.

    Bad options (an unusable OUT, unknown variants, invalid metadata) are refused before any
    package is built, as `sparsessp-bmz export` does.
    """
    from sparsessp_bmz.bmz.export import export
    from sparsessp_bmz.bmz.metadata import load_metadata
    from sparsessp_bmz.bmz.package import check_out_dir
    from sparsessp_bmz.bmz.variants import parse_variants
    from sparsessp_bmz.training.checkpoint import load_trained
    from sparsessp_bmz.training.run import BEST, checkpoint_path, is_finished

    check_out_dir(request.out)
    wanted = parse_variants(request.variants) if request.variants is not None else None
    publisher = load_metadata(request.metadata) if request.metadata is not None else None
    _, entries = load_matrix(request.matrix, list(request.overrides))
    result = MatrixExport()
    for entry in entries:
        config = entry.config
        if config is None or not is_finished(config):
            result.unfinished.append(f"{entry.organelle}/r{entry.ratio}/{entry.topology}")
            continue
        if on_entry is not None:
            on_entry(entry)
        trained = load_trained(checkpoint_path(config.run_dir(), BEST))
        outcome = export(trained, request.out, variants=wanted, metadata=publisher)
        result.archives += [package.archive for package in outcome.packages]
        result.failures += [str(failure).splitlines()[0] for failure in outcome.failures]
    return result
