"""Parameter and MAC counts of SparseSSP networks, beside the paper's Table 6.

MACs come from torch's own FLOP counter (`torch.utils.flop_counter`, MACs = FLOPs / 2) run on the
meta device: shapes propagate without arithmetic, so paper-width networks are counted in
milliseconds on a laptop.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from pydantic import ValidationError
from torch.utils.flop_counter import FlopCounterMode

from sparsessp_bmz.nets.network import SparseSSPNet
from sparsessp_bmz.spec import (
    INTERPOLATIONS,
    PROJECTIONS,
    TOPOLOGIES,
    Embedding,
    ModelSpec,
)

#: The paper's multi-task experiments learn the 12 AllenCell structures.
PAPER_NUM_TASKS = 12
#: Which Table 6 rows a network compares with: a plain UNet is the DoDNet backbone.
_PAPER_APPROACH = {"none": "dodnet", "dodnet": "dodnet", "repmode": "repmode", "tsns": "tsns"}

#: Paper Table 6 (r = 2, patch 32x128x128, prefix, projection in 3D), in GMACs.
PAPER_TABLE6_GMACS: dict[tuple[str, str], float] = {
    ("dodnet", "3d"): 113.86,
    ("dodnet", "2d"): 1.82,
    ("dodnet", "2to3d"): 41.02,
    ("dodnet", "3to2d"): 76.61,
    ("repmode", "3d"): 66.29,
    ("repmode", "2d"): 2.33,
    ("repmode", "2to3d"): 30.11,
    ("repmode", "3to2d"): 43.47,
    ("tsns", "3d"): 55.70,
    ("tsns", "2d"): 2.05,
    ("tsns", "2to3d"): 13.94,
    ("tsns", "3to2d"): 46.77,
}


@dataclass(frozen=True)
class Complexity:
    """Size and cost of one network for one forward pass of its training patch.

    `baked_*` describe the task-free network a package ships (equal to the others when the
    network has no task embedding).
    """

    spec: ModelSpec
    parameters: int
    gmacs: float
    baked_parameters: int
    baked_gmacs: float

    @property
    def paper_gmacs(self) -> float | None:
        """The paper's DoDNet-style figure for the same topology, where it is comparable."""
        comparable = (
            self.spec.ratio == 2
            and self.spec.patch == (32, 128, 128)
            and self.spec.interpolation == "prefix"
            and self.spec.projection == "3d"
            and self.spec.width == 1.0
            and self.spec.units == 256
        )
        key = (_PAPER_APPROACH[self.spec.embedding], self.spec.topology)
        return PAPER_TABLE6_GMACS.get(key) if comparable else None


def _count(net: torch.nn.Module, spec: ModelSpec) -> tuple[int, float]:
    x = torch.empty(1, 1, *spec.input_patch, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x)
    return sum(p.numel() for p in net.parameters()), counter.get_total_flops() / 2e9


def measure(spec: ModelSpec) -> Complexity:
    """Count parameters and MACs of one forward pass over the spec's training patch."""
    with torch.device("meta"):
        net = SparseSSPNet(spec).eval()
        baked = net.baked() if net.conditioned else net
    return Complexity(spec, *_count(net, spec), *_count(baked, spec))


def all_valid_specs(
    ratio: int = 2,
    patch: tuple[int, int, int] = (32, 128, 128),
    width: float = 1.0,
    units: int = 256,
    embeddings: tuple[Embedding, ...] = ("none",),
) -> list[ModelSpec]:
    """Every embedding x topology x interpolation x projection combination the spec accepts.

    Multi-task networks get the paper's 12 tasks, so their task-dependent layers have paper size.
    """
    specs = []
    for embedding, topology, interpolation, projection in itertools.product(
        embeddings, TOPOLOGIES, INTERPOLATIONS, PROJECTIONS
    ):
        tasks = () if embedding == "none" else tuple(f"task{i}" for i in range(PAPER_NUM_TASKS))
        try:
            specs.append(
                ModelSpec(
                    organelle=tasks[0] if tasks else "any",
                    tasks=tasks,
                    embedding=embedding,
                    ratio=ratio,
                    topology=topology,
                    interpolation=interpolation,
                    projection=projection,
                    width=width,
                    units=units,
                    patch=patch,
                )
            )
        except ValidationError:
            continue
    return specs
