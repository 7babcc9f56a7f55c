"""The library's front door for publishing: a trained model -> validated bioimage.io packages.

`export(trained, out_dir)` is what the `export` command and the demo call: it bakes every
structure of a multi-task network into its own task-free model, takes the checkpoint's held-out
test scores (evaluating the test split once if the run has none), and builds, validates and
places one package per structure and variant. Everything a user can get wrong (a variant that
does not fit the model, a missing manifest for test tensors) is refused before any package is
built. In the spirit of CAREamics' `export_to_bmz`; `load_package` is its way back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sparsessp_bmz.bmz.metadata import PublisherMetadata
from sparsessp_bmz.bmz.package import (
    ExportedPackage,
    ExportFailedError,
    export_package,
    tensors_for,
)
from sparsessp_bmz.bmz.variants import package_id, variants_for
from sparsessp_bmz.nets.variants import Variant
from sparsessp_bmz.trained import TrainedModel


@dataclass
class ExportOutcome:
    """The packages placed and the ones that failed validation (their reports are placed)."""

    packages: list[ExportedPackage] = field(default_factory=list)
    failures: list[ExportFailedError] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.packages) and not self.failures


@dataclass(frozen=True)
class PlannedPackage:
    """One package to build: a single-structure model and a variant."""

    model: TrainedModel
    variant: Variant

    @property
    def package_id(self) -> str:
        return package_id(self.model.spec, self.variant)


def plan_packages(
    trained: TrainedModel, variants: tuple[Variant, ...] | None = None
) -> list[PlannedPackage]:
    """One package per structure and variant; a variant that does not fit is refused here."""
    chosen = variants_for(trained.spec, variants)
    models = [trained.for_task(task) for task in trained.spec.tasks] or [trained]
    return [PlannedPackage(model, variant) for model in models for variant in chosen]


def export(
    trained: TrainedModel,
    out_dir: Path = Path("packages"),
    *,
    variants: tuple[Variant, ...] | None = None,
    metadata: PublisherMetadata | None = None,
    test_input: np.ndarray | None = None,
    test_target: np.ndarray | None = None,
    progress: bool = False,
    on_start: Callable[[PlannedPackage], None] | None = None,
    on_done: Callable[[ExportedPackage | ExportFailedError], None] | None = None,
) -> ExportOutcome:
    """Validated packages of `trained` under `out_dir` (see the module docstring).

    `test_input`/`test_target` replace the held-out test volume (a sparse (z, y, x) stack and its
    dense target); without them the manifest's first test volume per structure is used.
    `on_start`/`on_done` let a caller report progress per package.
    """
    from sparsessp_bmz.test_scores import scores_of

    planned = plan_packages(trained, variants)
    scores = scores_of(trained, progress=progress)
    outcome = ExportOutcome()
    tensors = {}
    for item in planned:
        model = replace(
            item.model,
            test_metrics={k: v for k, v in scores.items() if k == item.model.spec.organelle},
        )
        organelle = model.spec.organelle
        if organelle not in tensors:
            tensors[organelle] = tensors_for(model, test_input, test_target)
        if on_start is not None:
            on_start(item)
        try:
            result: ExportedPackage | ExportFailedError = export_package(
                model, item.variant, out_dir, tensors[organelle], metadata=metadata
            )
            outcome.packages.append(result)
        except ExportFailedError as err:
            result = err
            outcome.failures.append(err)
        if on_done is not None:
            on_done(result)
    return outcome
