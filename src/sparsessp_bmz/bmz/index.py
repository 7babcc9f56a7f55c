"""`packages/index.json` and `packages/index.md`: every placed package at a glance.

Rebuilt from what is on disk (each package's rdf.yaml and its validation report) on every
export, so the index can never disagree with the packages it lists. A folder whose rdf.yaml cannot
be read as a mapping is someone else's (or a broken copy): it is left out with a warning, never
fatal to the export that rebuilds the index.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from sparsessp_bmz.bmz.limits import parse_rdf, read_rdf_file
from sparsessp_bmz.errors import UserInputError

#: Where export writes each package's validation report, beside the packages.
REPORTS_DIR = "reports"
INDEX_JSON = "index.json"
INDEX_MD = "index.md"


def _status(out_dir: Path, model_id: str) -> str:
    report = out_dir / REPORTS_DIR / f"{model_id}.json"
    if not report.is_file():
        return "not validated"
    try:
        records = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        warnings.warn(f"{report} is unreadable; its package is listed as such", stacklevel=3)
        return "report unreadable"
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return "report unreadable"
    return "passed" if records and all(r.get("passed") is True for r in records) else "failed"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _metrics(value: Any) -> dict[str, float]:
    """The numeric test metrics of an entry (anything else in a hand-edited RDF is dropped)."""
    return {
        str(k): float(v)
        for k, v in _mapping(value).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _entry(out_dir: Path, rdf_path: Path) -> dict[str, Any] | None:
    """The index entry of one package folder, or None (with a warning) when it is no package."""
    try:
        rdf: Any = parse_rdf(str(rdf_path), read_rdf_file(rdf_path))
    except UserInputError as err:
        warnings.warn(f"{err}; left out of the index", stacklevel=3)
        return None
    ours = _mapping(_mapping(rdf.get("config")).get("sparsessp"))
    spec = _mapping(ours.get("spec"))
    model_id = str(ours.get("package_id") or rdf.get("id") or rdf_path.parent.name)
    zip_path = out_dir / f"{model_id}.zip"
    return {
        "id": model_id,
        "name": rdf.get("name") if isinstance(rdf.get("name"), str) else None,
        "organelle": spec.get("organelle"),
        "ratio": spec.get("ratio"),
        "topology": spec.get("topology"),
        "variant": ours.get("variant", "standard"),
        "metrics": _metrics(ours.get("test_metrics")),
        "validation": _status(out_dir, model_id),
        "folder": rdf_path.parent.name,
        "zip": zip_path.name if zip_path.is_file() else None,
        "weights": sorted(str(k) for k in _mapping(rdf.get("weights"))),
    }


def collect(out_dir: Path) -> list[dict[str, Any]]:
    """One entry per package folder with an rdf.yaml, sorted by folder. A stray entry (a file,
    a folder whose rdf.yaml is unreadable, too large, not YAML or not a mapping) is left out with
    a warning; hidden folders (work folders of running exports) are not looked at."""
    entries = []
    for rdf_path in sorted(out_dir.glob("*/rdf.yaml")):
        if rdf_path.parent.name.startswith("."):
            continue
        try:
            entry = _entry(out_dir, rdf_path)
        except Exception as err:  # a stray folder never breaks the index of the others
            warnings.warn(
                f"{rdf_path} could not be indexed ({type(err).__name__}: {err}); left out",
                stacklevel=2,
            )
            continue
        if entry is not None:
            entries.append(entry)
    return entries


def _markdown(entries: list[dict[str, Any]]) -> str:
    header = ["id", "organelle", "r", "topology", "variant", "test metrics", "validation", "zip"]
    lines = ["# SparseSSP packages", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    for e in entries:
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in e["metrics"].items())
        row = [e["id"], e["organelle"], e["ratio"], e["topology"], e["variant"], metrics]
        row.append(e["validation"])
        row.append(e["zip"] or "")
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    if not entries:
        lines.append("")
        lines.append("No packages yet: `sparsessp-bmz export CHECKPOINT`.")
    return "\n".join(lines) + "\n"


def write_index(out_dir: Path) -> Path:
    """Rewrite index.json and index.md of `out_dir`; returns index.json."""
    entries = collect(out_dir)
    path = out_dir / INDEX_JSON
    path.write_text(json.dumps({"packages": entries}, indent=2) + "\n", encoding="utf-8")
    (out_dir / INDEX_MD).write_text(_markdown(entries), encoding="utf-8")
    return path
