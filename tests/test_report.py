"""Reports with pictures: `evaluate --report`'s HTML page and the matrix's R² against r."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import pytest
from eval_fixtures import RATIO, nearest, smoothed_tl_dataset

from sparsessp_bmz.baselines import fit_baselines
from sparsessp_bmz.data.config import DataSettings
from sparsessp_bmz.data.splits import rows_for
from sparsessp_bmz.evaluation import baseline_verdict, evaluate_predictor
from sparsessp_bmz.report import ReportFigures, write_report
from sparsessp_bmz.training.matrix_summary import EntryResult, write_summary


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources += [value or "" for name, value in attrs if name == "src"]


def _decoded_images(html_file: Path) -> list[Path]:
    """Every image the page references, each checked to exist beside it and to decode."""
    parser = _Images()
    parser.feed(html_file.read_text(encoding="utf-8"))
    paths = [html_file.parent / source for source in parser.sources]
    for path in paths:
        assert path.is_file(), path
        assert matplotlib.image.imread(path).size > 0
    return paths


def test_the_report_page_shows_every_volume_with_decodable_pictures(tmp_path: Path) -> None:
    manifest = smoothed_tl_dataset(tmp_path / "data", cells=4)
    settings = DataSettings(manifest=manifest, structures=("dna",))
    figures = ReportFigures(tmp_path / "report", RATIO)
    train = tuple(rows_for(settings, "train"))
    test = rows_for(settings, "test")
    result = evaluate_predictor(
        nearest,
        test,
        settings,
        RATIO,
        model_id="net",
        split="test",
        baselines=fit_baselines(train, settings, RATIO, "dna").predictors(),
        on_volume=figures,
    )
    page = write_report(result, figures, baseline_verdict(result), "net on test")
    images = _decoded_images(page)
    assert len(images) == 2 * len(test)  # views and intensity histogram of every volume
    text = page.read_text(encoding="utf-8")
    assert "ridge" in text and "F1@0.5" in text and "does not beat" in text


@pytest.mark.parametrize("scored", [True, False], ids=["scored", "nothing-scored"])
def test_the_matrix_report_draws_r2_against_r_with_the_baselines(
    tmp_path: Path, scored: bool
) -> None:
    rows = [
        EntryResult("dna", ratio, topology, status="trained")
        for topology in ("3to2d", "3d")
        for ratio in (2, 4)
    ]
    if scored:
        for index, row in enumerate(rows):
            row.r2, row.ridge_r2, row.mean_r2 = 0.5 - 0.05 * index, 0.3, 0.0
    write_summary(rows, tmp_path)
    report = tmp_path / "report.md"
    assert report.is_file() is scored
    if scored:
        text = report.read_text(encoding="utf-8")
        assert "| 3to2d | 4 | 0.4500 |" in text and "ridge R²" in text
        assert matplotlib.image.imread(tmp_path / "r2_vs_ratio.png").size > 0
