"""RepMode's split protocol, made deterministic and consistent across structures.

Per structure, 25 % of the cells go to test and 10 % of the rest to validation (seed 42). The unit
is the cell (its TL file), not the row: in a multi-structure data set the same TL appears once per
structure, and a network trained on several structures must never be tested on a TL it has seen.
Cells are therefore ranked once by one seeded permutation of all cells, and every structure takes
its test and validation cells from the front of that ranking: structures imaged on the same cells
get the same split. The table is written next to the manifest and, once there, is authoritative,
so prefabricated splits (as the paper used RepMode's) can be dropped in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np

from sparsessp_bmz.data.atomic import write_rows_csv
from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.data.manifest import SPLITS, ManifestRow, read_manifest, select_structures
from sparsessp_bmz.errors import UserInputError


def _count(n: int, fraction: float, keep: int) -> int:
    """round(n * fraction), but leaving at least `keep` items and taking one when it can."""
    if n <= keep or fraction == 0.0:
        return 0
    return min(max(1, int(n * fraction + 0.5)), n - keep)


def assign_splits(
    rows: list[ManifestRow], seed: int = 42, test_fraction: float = 0.25, val_fraction: float = 0.1
) -> list[ManifestRow]:
    """The rows with their `split` set; identical input gives identical output on any machine."""
    cells = sorted({row.cell_key for row in rows})
    rank = dict(
        zip(cells, np.random.default_rng(seed).permutation(len(cells)).tolist(), strict=True)
    )
    by_structure: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_structure[row.structure].add(row.cell_key)
    split_of: dict[tuple[str, str], str] = {}
    for structure, keys in by_structure.items():
        ordered = sorted(keys, key=rank.__getitem__)
        n_test = _count(len(ordered), test_fraction, keep=1)
        n_val = _count(len(ordered) - n_test, val_fraction, keep=1)
        for position, key in enumerate(ordered):
            name = "test" if position < n_test else "val" if position < n_test + n_val else "train"
            split_of[structure, key] = name
    return [replace(row, split=split_of[row.structure, row.cell_key]) for row in rows]


def write_splits(rows: list[ManifestRow], settings: DataSettings) -> None:
    """Save the manifest rows with a `split` column, paths still relative to the manifest."""
    columns = [name for name, _ in rows[0].raw] + ["split"]
    values = [[value for _, value in row.raw] + [row.split] for row in rows]
    write_rows_csv(settings.splits_path, columns, values)


def _identity(row: ManifestRow) -> tuple[str, int, str, int, str]:
    return (
        str(row.signal_path),
        row.signal_channel,
        str(row.target_path),
        row.target_channel,
        row.structure,
    )


def load_splits(settings: DataSettings, *, save: bool = True) -> list[ManifestRow]:
    """Every manifest row with its split: read from the splits file, created on first use.

    `save=False` computes a missing table without writing it (the up-front data check, which
    must leave nothing behind when it refuses the data); the table is the same either way.
    """
    rows = read_manifest(settings.manifest)
    if not settings.splits_path.exists():
        rows = assign_splits(
            rows, settings.split_seed, settings.test_fraction, settings.val_fraction
        )
        if save:
            write_splits(rows, settings)
        return rows
    saved = read_manifest(settings.splits_path)
    unsplit = [row for row in saved if row.split is None]
    if unsplit:
        raise UserInputError(
            f"{unsplit[0].where}: the split column is empty; give train, val or test"
        )
    if sorted(map(_identity, saved)) != sorted(map(_identity, rows)):
        raise UserInputError(
            f"{settings.splits_path} does not list the same images as {settings.manifest}; "
            "delete it to recompute the splits, or fix it by hand"
        )
    return saved


def rows_for(settings: DataSettings, split: str | None, *, save: bool = True) -> list[ManifestRow]:
    """The rows of one split (None: all), restricted to the requested structures."""
    if split is not None and split not in SPLITS:
        raise UserInputError(f"split must be one of {', '.join(SPLITS)} (or all), got {split!r}")
    rows = select_structures(load_splits(settings, save=save), settings.structures)
    return [row for row in rows if split is None or row.split == split]
