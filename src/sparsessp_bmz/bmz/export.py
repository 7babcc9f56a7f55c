"""The library's front door for publishing: a trained model -> validated bioimage.io packages.

`export(trained, out_dir)` is what the `export` command and the demo call: it bakes every
structure of a multi-task network into its own task-free model, takes the checkpoint's held-out
test scores (evaluating the test split once if the run has none), and builds, validates and
places one package per structure and variant. Everything a user can get wrong (a variant that
does not fit the model, a missing manifest for test tensors) is refused before any package is
built. In the spirit of CAREamics' `export_to_bmz`/`load_from_bmz`; `load_package` is the way
back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
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
from sparsessp_bmz.metrics import metrics_from_mapping
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
    tasks = trained.spec.tasks if trained.multi_task else (trained.spec.organelle,)
    models = [trained.for_task(task) for task in tasks]
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
    from sparsessp_bmz.scores import scores_of

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


def load_package(path: Path) -> TrainedModel:
    """The model of one of this project's packages (folder, rdf.yaml or zip), ready for
    `predict_volume` and `evaluate_model`, like `load_trained` for a checkpoint.

    The network is built by this project's own code from `config.sparsessp.spec` and gets the
    package's state dict; the package's shipped network source is never imported, so a package
    needs no trust to be loaded; its state dict is checked against the sha256 its rdf.yaml
    records before it is read. Dense-grid and plane packages give back their inner network,
    which takes the sparse stack as every SparseSSP network does. A package this project did not
    write is refused with the reason.
    """
    import io

    import torch

    from sparsessp_bmz.bmz.facts import DEFAULT_TIMESTAMP
    from sparsessp_bmz.bmz.validate import open_package
    from sparsessp_bmz.bmz.weights import STATE_DICT_FILE, WeightsFile, verified_weights
    from sparsessp_bmz.data.config import DEFAULT_VOXEL_SIZE_UM
    from sparsessp_bmz.errors import UserInputError
    from sparsessp_bmz.nets import build_net
    from sparsessp_bmz.spec import ModelSpec
    from sparsessp_bmz.trained import TrainingFacts

    rdf, read, _ = open_package(Path(path))
    ours = ((rdf.get("config") or {}) if isinstance(rdf, dict) else {}).get("sparsessp")
    if not isinstance(ours, dict) or "spec" not in ours:
        raise UserInputError(
            f"{path} is not a sparsessp-bmz package (its rdf.yaml has no config.sparsessp.spec); "
            "run foreign packages with bioimageio.core"
        )
    spec = ModelSpec.model_validate(ours["spec"])
    entry = (rdf.get("weights") or {}).get("pytorch_state_dict") or {}
    recorded = WeightsFile(
        STATE_DICT_FILE, entry.get("sha256") if isinstance(entry, dict) else None
    )
    data = verified_weights(Path(path), read, recorded)  # a truncated or modified file: one error
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if ours.get("variant", "standard") != "standard":  # wrappers keep the network as `net`
        state = {key.removeprefix("net."): value for key, value in state.items()}
    net = build_net(spec)
    if net.conditioned:  # a multi-task network baked for one structure, as the package stores it
        net = net.baked()
    net.load_state_dict(state)
    grid = tuple(float(v) for v in ours.get("target_grid_um") or ours["voxel_size_um"]["output"])
    training = ours.get("training") or {}
    metrics = ours.get("test_metrics")
    saved_at = datetime.fromisoformat(str(rdf["timestamp"])) if rdf.get("timestamp") else None
    return TrainedModel(
        spec=spec,
        net=net.eval(),
        grid_um=grid if len(grid) == 3 else DEFAULT_VOXEL_SIZE_UM,  # type: ignore[arg-type]
        facts=TrainingFacts(
            run=str(training.get("run", "")),
            global_step=int(training.get("global_step") or 0),
            epoch=int(training.get("epoch") or 0),
            precision=str(training.get("precision") or ""),
            seed=training.get("seed"),
            best_val_mse=training.get("best_val_mse"),
            saved_at=None if saved_at == DEFAULT_TIMESTAMP else saved_at,
        ),
        test_metrics={spec.organelle: metrics_from_mapping(metrics)} if metrics else {},
    )
