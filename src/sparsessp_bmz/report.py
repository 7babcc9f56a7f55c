"""`evaluate --report`: one HTML page per model with pictures of its predictions and its scores.

The page (`report.html`) references PNGs written beside it in the same folder (relative links),
so the folder is self-contained: copy or zip it and it still shows. PNGs rather than base64
inlined images keep the page small and the pictures usable on their own. Contents: the metric
tables of the network beside the baselines (whole volume, foreground, objects); per test volume
TL | prediction | target | |error| in xy, xz and yz (`figures.volume_views`) and the histogram of
predicted against target intensities (`figures.intensity_histogram`).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from sparsessp_bmz.data.atomic import write_text
from sparsessp_bmz.evaluation import EvaluationResult, VolumeView
from sparsessp_bmz.features import upsample
from sparsessp_bmz.metrics import (
    ALL,
    METRIC_NAMES,
    OBJECT_NAMES,
    PREDICTORS,
    SCOPES,
    VOCABULARY,
    column,
)
from sparsessp_bmz.reporting import cell

REPORT_HTML = "report.html"
#: Volumes pictured per structure: enough to see a pattern, bounded for large test splits.
MAX_VOLUMES_PER_STRUCTURE = 4


@dataclass(frozen=True)
class VolumeFigures:
    """The pictures of one test volume (file names relative to the report's folder)."""

    structure: str
    name: str
    views: str
    histogram: str


@dataclass
class ReportFigures:
    """Draws every volume's pictures as evaluation sees it (`evaluate_model(on_volume=...)`)."""

    folder: Path
    ratio: int
    figures: list[VolumeFigures] = field(default_factory=list)

    def __call__(self, view: VolumeView) -> None:
        from sparsessp_bmz.figures import intensity_histogram, volume_views

        if sum(f.structure == view.structure for f in self.figures) >= MAX_VOLUMES_PER_STRUCTURE:
            return
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{view.structure}-{view.name}")
        prediction, target = view.predictions[""], view.target
        tl = upsample(view.sparse, self.ratio, target.shape[0])
        title = f"{view.structure} · {view.name}"
        views = volume_views(tl, prediction, target, title, self.folder / f"{stem}-views.png")
        histogram = intensity_histogram(
            prediction, target, title, self.folder / f"{stem}-histogram.png"
        )
        self.figures.append(VolumeFigures(view.structure, view.name, views.name, histogram.name))


def _table(result: EvaluationResult) -> str:
    """Per structure, network and baselines, every metric of every scope."""
    metrics = [(m, "") for m in METRIC_NAMES] + [(m, "fg") for m in METRIC_NAMES]
    if result.objects_summary:
        metrics += [(m, "") for m in OBJECT_NAMES]
    if result.true_objects_summary:
        metrics += [(m, "true") for m in OBJECT_NAMES]
    head = "".join(f"<th>{html.escape(column(m, s)[1])}</th>" for m, s in metrics)
    rows = []
    for structure in [*result.structures(), ALL]:
        sets = {"": result.scores(structure)}
        sets |= {k: b.scores(structure) for k, b in result.baselines.items()}
        for key, scores in sets.items():
            values = scores.columns()
            cells = "".join(f"<td>{cell(values[column(m, s)[0]])}</td>" for m, s in metrics)
            rows.append(
                f"<tr><td>{html.escape(structure)}</td>"
                f"<td>{html.escape(PREDICTORS[key][0])}</td>{cells}</tr>"
            )
    return (
        f"<table><tr><th>structure</th><th>predictor</th>{head}</tr>\n"
        + "\n".join(rows)
        + "</table>"
    )


def _glossary(result: EvaluationResult) -> str:
    """What every metric, scope and predictor of the table means (the shared vocabulary)."""
    names = [*METRIC_NAMES, *(OBJECT_NAMES if result.objects_summary else ())]
    items = [f"<li><b>{VOCABULARY[n].label}</b>: {VOCABULARY[n].description}</li>" for n in names]
    items += [f"<li><b>{label or 'whole'}</b>: {text}</li>" for label, text in SCOPES.values()]
    keys = ["", *result.baselines]
    items += [f"<li><b>{PREDICTORS[k][0]}</b>: {PREDICTORS[k][1]}</li>" for k in keys]
    return "<ul>" + "\n".join(html.escape(i, quote=False) for i in items) + "</ul>"


_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}"
    "table{border-collapse:collapse;font-size:90%}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    "img{max-width:100%}"
)


def write_report(
    result: EvaluationResult, figures: ReportFigures, verdict: str, title: str
) -> Path:
    """report.html in `figures.folder`, linking the PNGs drawn there; written atomically."""
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p><b>{html.escape(verdict)}</b></p>",
        "<h2>Scores</h2>",
        _table(result),
        _glossary(result),
        "<h2>Test volumes</h2>",
        "<p>Prediction and target share one contrast (the target's 0.5–99.5 percentiles); "
        "|error| is scaled to its own maximum. Planes through the volume's centre.</p>",
    ]
    for item in figures.figures:
        name = html.escape(f"{item.structure} · {item.name}")
        parts += [
            f"<h3>{name}</h3>",
            f"<img src='{html.escape(item.views)}' alt='{name}: views'>",
            f"<img src='{html.escape(item.histogram)}' alt='{name}: intensity histogram'>",
        ]
    parts.append("</body></html>")
    path = figures.folder / REPORT_HTML
    write_text(path, "\n".join(parts) + "\n")
    return path
