"""Tensor axes of a SparseSSP package, derived once from the network's real geometry.

The RDF has no resize operation, so the z upsampling by r happens inside the network and the
standard variant's output z axis is a size reference to the input z axis. bioimageio.spec
computes `out = ref * ref_scale / out_scale + offset` while deepImageJ (JDLL) computes
`out = ref * out_scale + 2 * offset`; both give r times the input depth only with input z scale
r*r, output z scale r and offset 0. The scales are therefore not voxel sizes (those are in the
model card and `config.sparsessp`), which is also why the axes carry no unit. The dense-grid
variant's output has its input's shape (scale 1 on both sides) and the plane variant has no z.
"""

from __future__ import annotations

from bioimageio.spec.model import v0_5

from sparsessp_bmz.nets.variants import Variant
from sparsessp_bmz.spec import XY_MULTIPLE, ModelSpec

INPUT_ID = "raw"
OUTPUT_ID = "prediction"
#: Output y/x voxels a tiling consumer crops from each side of a tile: the 5-level UNet sees far
#: beyond its tile, so border voxels are the least reliable ones of a tile.
XY_HALO = 8
#: Smallest input y/x: one XY_MULTIPLE more than the net needs, so that the halo leaves voxels.
XY_MIN = 2 * XY_MULTIPLE


def z_scales(spec: ModelSpec, variant: Variant) -> tuple[float, float]:
    """(input z scale, output z scale) on which bioimageio.spec and deepImageJ agree."""
    if variant == "standard":
        return float(spec.ratio * spec.ratio), float(spec.ratio)
    return 1.0, 1.0


def input_depth(spec: ModelSpec, variant: Variant) -> int | v0_5.ParameterizedSize:
    """The input z size: exact for depth-folding topologies, else min/step from the z pooling.

    The dense-grid variant reads r target slices per sparse slice, so its sizes are r times the
    standard variant's.
    """
    factor = spec.ratio if variant == "dense" else 1
    if spec.fixed_depth:
        return spec.input_patch[0] * factor
    step = spec.input_depth_step * factor
    return v0_5.ParameterizedSize(min=step, step=step)


def input_axes(spec: ModelSpec, variant: Variant) -> list[v0_5.InputAxis]:
    """batch, channel, [z,] y, x of the transmitted-light input."""
    xy = v0_5.ParameterizedSize(min=XY_MIN, step=XY_MULTIPLE)
    axes: list[v0_5.InputAxis] = [
        v0_5.BatchAxis(),
        v0_5.ChannelAxis(channel_names=[v0_5.Identifier("transmitted_light")]),
    ]
    if variant != "plane":
        z_in, _ = z_scales(spec, variant)
        axes.append(
            v0_5.SpaceInputAxis(id=v0_5.AxisId("z"), size=input_depth(spec, variant), scale=z_in)
        )
    axes += [
        v0_5.SpaceInputAxis(id=v0_5.AxisId("y"), size=xy),
        v0_5.SpaceInputAxis(id=v0_5.AxisId("x"), size=xy),
    ]
    return axes


def _reference(axis: str) -> v0_5.SizeReference:
    return v0_5.SizeReference(
        tensor_id=v0_5.TensorId(INPUT_ID), axis_id=v0_5.AxisId(axis), offset=0
    )


def output_axes(spec: ModelSpec, variant: Variant) -> list[v0_5.OutputAxis]:
    """batch, channel, [z,] y, x of the prediction; y/x are tiled with a halo."""
    axes: list[v0_5.OutputAxis] = [
        v0_5.BatchAxis(),
        v0_5.ChannelAxis(channel_names=[v0_5.Identifier(spec.organelle.lower())]),
    ]
    if variant != "plane":
        _, z_out = z_scales(spec, variant)
        axes.append(v0_5.SpaceOutputAxis(id=v0_5.AxisId("z"), size=_reference("z"), scale=z_out))
    axes += [
        v0_5.SpaceOutputAxisWithHalo(id=v0_5.AxisId("y"), size=_reference("y"), halo=XY_HALO),
        v0_5.SpaceOutputAxisWithHalo(id=v0_5.AxisId("x"), size=_reference("x"), halo=XY_HALO),
    ]
    return axes


def dynamic_axes(spec: ModelSpec, variant: Variant) -> dict[int, str]:
    """Axes of the ONNX graph that vary in size (batch, y, x, and z where the net allows)."""
    if variant == "plane":
        return {0: "batch", 2: "y", 3: "x"}
    axes = {0: "batch", 3: "y", 4: "x"}
    if not spec.fixed_depth:
        axes[2] = "z"
    return axes
