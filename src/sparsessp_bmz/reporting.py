"""Summary tables: one CSV, one markdown table and one console table from the same rows.

The matrix and the demo both end in such a summary. Before, each had its own writer and its own
cell formatting; here the rows are plain dataclass records, every column is named once with its
label (metric labels from `metrics.METRIC_LABELS`), and the three outputs cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsessp_bmz.data.atomic import write_records_csv, write_text
from sparsessp_bmz.metrics import METRIC_LABELS

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
#: Colours of a row's status in the console table.
STATUS_COLOURS = {"failed": "red", "already finished": "dim", "passed": "green"}


@dataclass(frozen=True)
class Column:
    """One shown column: the record key and its header."""

    key: str
    label: str
    numeric: bool = False


def metric_columns(prefix: str = "") -> list[Column]:
    """The paper's metrics, labelled as everywhere else."""
    return [Column(key, prefix + label, True) for key, label in METRIC_LABELS.items()]


def cell(value: Any) -> str:
    """Floats with 4 decimals, NaN (not measured) as empty."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def write_summary(
    records: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    shown: Sequence[Column],
    folder: Path,
    footer: str = "",
) -> tuple[Path, Path]:
    """summary.csv (every field) and summary.md (the shown columns), written atomically."""
    csv_path, md_path = folder / SUMMARY_CSV, folder / SUMMARY_MD
    write_records_csv(csv_path, list(fields), list(records))
    lines = ["| " + " | ".join(c.label for c in shown) + " |", "|" + "---|" * len(shown)]
    for record in records:
        cells = [cell(record[c.key]).replace("|", "\\|") for c in shown]
        lines.append("| " + " | ".join(cells) + " |")
    if footer:
        lines += ["", footer]
    write_text(md_path, "\n".join(lines) + "\n")
    return csv_path, md_path


def console_table(
    records: Sequence[Mapping[str, Any]],
    shown: Sequence[Column],
    title: str,
    coloured: Sequence[str] = ("status",),
):  # type: ignore[no-untyped-def]
    """A rich table of the shown columns; the `coloured` columns are coloured by value."""
    from rich.table import Table

    table = Table(title=title)
    for column in shown:
        table.add_column(column.label, justify="right" if column.numeric else "left")
    for record in records:
        cells = []
        for column in shown:
            text = cell(record[column.key])
            if column.key in coloured:
                text = f"[{STATUS_COLOURS.get(text, 'green')}]{text}[/]"
            cells.append(text)
        table.add_row(*cells)
    return table
