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

import yaml

#: Where export writes each package's validation report, beside the packages.
REPORTS_DIR = "reports"
INDEX_JSON = "index.json"
INDEX_MD = "index.md"


def _status(out_dir: Path, model_id: str) -> str:
    report = out_dir / REPORTS_DIR / f"{model_id}.json"
    if not report.is_file():
        return "not validated"
    records = json.loads(report.read_text(encoding="utf-8"))
    return "passed" if records and all(r.get("passed") for r in records) else "failed"


def collect(out_dir: Path) -> list[dict[str, Any]]:
    """One entry per package folder with an rdf.yaml, sorted by id."""
    entries = []
    for rdf_path in sorted(out_dir.glob("*/rdf.yaml")):
        if rdf_path.parent.name.startswith("."):
            continue
        try:
            rdf = yaml.safe_load(rdf_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            rdf = f"unreadable ({type(err).__name__})"
        if not isinstance(rdf, dict):
            message = f"{rdf_path} is not a package description; left out of the index"
            warnings.warn(message, stacklevel=2)
            continue
        ours = (rdf.get("config") or {}).get("sparsessp") or {}
        spec = ours.get("spec") or {}
        model_id = str(ours.get("package_id") or rdf.get("id") or rdf_path.parent.name)
        zip_path = out_dir / f"{model_id}.zip"
        entries.append(
            {
                "id": model_id,
                "name": rdf.get("name"),
                "organelle": spec.get("organelle"),
                "ratio": spec.get("ratio"),
                "topology": spec.get("topology"),
                "variant": ours.get("variant", "standard"),
                "metrics": ours.get("test_metrics") or {},
                "validation": _status(out_dir, model_id),
                "folder": rdf_path.parent.name,
                "zip": zip_path.name if zip_path.is_file() else None,
                "weights": sorted((rdf.get("weights") or {}).keys()),
            }
        )
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
