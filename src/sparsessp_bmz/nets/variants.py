"""The networks a bioimage.io package can ship: one trained SparseSSPNet, three input/output forms.

Consumers disagree about shapes, so one network is wrapped differently for each of them:

- `standard`: the SparseSSPNet itself, sparse TL (B, 1, D/r, H, W) -> (B, 1, D, H, W). For
  bioimageio.core and deepImageJ, which accept an output r times deeper than the input.
- `dense` ("dense grid"): ilastik needs output shape == input shape, so the input is a stack on
  the *target* z grid (B, 1, D, H, W) and the wrapper keeps the slices a sparse microscope would
  have acquired, z = 0, r, 2r, ... (`x[:, :, ::r]`), before running the network.
- `plane`: QuPath runs 2D models only: (B, 1, H, W) -> (B, 1, H, W), for a network trained on
  single planes (patch depth 1, ratio 1, topology '2d').

Wrappers keep the network as attribute `net`, so their state dicts are the network's with the
prefix `net.`; the standard variant has no wrapper, so its state dict has the network's own keys.
Wrappers use only slicing with a python step, unsqueeze and squeeze, which `torch.jit.trace` and
the legacy ONNX exporter keep shape-generic. Their eager-mode shape checks are skipped while
tracing (a python check is not recorded in a trace); the package's axes state the valid sizes.

`build_package_net` is the package's architecture callable: it must work from the single shipped
file, so it builds from `NetGeometry` (no pydantic) and bakes multi-task networks for their task.
"""

from typing import Any, Literal

import torch
from torch import Tensor, nn

from sparsessp_bmz.nets.geometry import NetGeometry
from sparsessp_bmz.nets.network import SparseSSPNet

Variant = Literal["standard", "dense", "plane"]
VARIANTS: tuple[Variant, ...] = ("standard", "dense", "plane")


class DisplayMap(nn.Module):
    """value * gain + offset: maps the z-scored prediction onto 0..1 for probability displays.

    Inside the network rather than a `scale_linear` postprocessing op, because consumers read that
    op differently: QuPath's reader needs list-valued gain/offset, and deepImageJ (JDLL) applies
    the list form voxel by voxel. Folded in, every consumer and every weight format runs the same
    constant multiply-add. Identity for gain 1 and offset 0.
    """

    def __init__(self, gain: float = 1.0, offset: float = 0.0) -> None:
        super().__init__()
        self.gain = float(gain)
        self.offset = float(offset)

    def forward(self, x: Tensor) -> Tensor:
        if self.gain == 1.0 and self.offset == 0.0:
            return x
        return x * self.gain + self.offset


class DenseGridNet(nn.Module):
    """Input on the target z grid (B, 1, D, H, W); output (B, 1, D, H, W).

    Keeps slices z = 0, r, 2r, ... and predicts all D slices from them. D must be a multiple of
    r (otherwise the output would have ceil(D/r)*r slices, not D): eager calls raise ValueError.
    """

    def __init__(self, net: nn.Module, ratio: int, display: DisplayMap | None = None) -> None:
        super().__init__()
        if ratio < 1:
            raise ValueError(f"sparsity ratio must be >= 1, got {ratio}")
        self.net = net
        self.ratio = ratio
        self.display = display or DisplayMap()

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_tracing() and (x.dim() != 5 or x.shape[2] % self.ratio):
            raise ValueError(
                f"the dense-grid network takes (batch, 1, z, y, x) on the target z grid with z a "
                f"multiple of the sparsity ratio r={self.ratio} (it keeps slices 0, r, 2r, ...), "
                f"got shape {tuple(x.shape)}"
            )
        return self.display(self.net(x[:, :, :: self.ratio]))


class PlaneNet(nn.Module):
    """(B, 1, H, W) -> (B, 1, H, W) around a single-plane network (depth 1, ratio 1, '2d')."""

    def __init__(self, net: SparseSSPNet, display: DisplayMap | None = None) -> None:
        super().__init__()
        spec = net.spec
        if not spec.is_plane:
            raise ValueError(
                f"a plane network needs patch depth 1, ratio 1 and topology '2d' (one plane in, "
                f"one plane out); got depth {spec.patch[0]}, ratio {spec.ratio}, topology "
                f"'{spec.topology}'"
            )
        self.net = net
        self.display = display or DisplayMap()

    def forward(self, x: Tensor) -> Tensor:
        if not torch.jit.is_tracing() and x.dim() != 4:
            raise ValueError(f"the plane network takes (batch, 1, y, x), got {tuple(x.shape)}")
        return self.display(self.net(x.unsqueeze(2)).squeeze(2))


def wrap_variant(
    net: SparseSSPNet, variant: str, display: tuple[float, float] | None = None
) -> nn.Module:
    """`net` (task-free) in the form `variant` ships it: itself, DenseGridNet or PlaneNet.

    `display` is the (gain, offset) of the wrappers' 0..1 display map; the standard variant keeps
    the model's z-scored output and takes none.
    """
    if variant == "standard":
        if display is not None:
            raise ValueError("the standard variant keeps z-scored outputs: give no display map")
        return net
    mapping = DisplayMap(*display) if display is not None else None
    if variant == "dense":
        return DenseGridNet(net, net.spec.ratio, mapping)
    if variant == "plane":
        return PlaneNet(net, mapping)
    raise ValueError(f"unknown package variant {variant!r}; choose one of {list(VARIANTS)}")


def build_package_net(
    variant: str = "standard", display: list[float] | None = None, **fields: Any
) -> nn.Module:
    """The network a bioimage.io package ships (its architecture callable), in eval-ready form.

    `fields` are the description's fields (`ModelSpec.model_dump(mode="json")`); multi-task
    descriptions give the task-free network baked for `organelle`. `display` is [gain, offset]
    of a dense-grid or plane package's 0..1 map. The result's state dict is what the package
    stores for `variant`.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown package variant {variant!r}; choose one of {list(VARIANTS)}")
    net = SparseSSPNet(NetGeometry(**fields))
    if net.conditioned:
        net = net.baked()
    return wrap_variant(net, variant, None if display is None else (display[0], display[1]))
