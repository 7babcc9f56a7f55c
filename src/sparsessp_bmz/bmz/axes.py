"""Tensor axes of a SparseSSP package, derived once from the network's real geometry.

The RDF has no resize operation, so the z upsampling by r happens inside the network and the
output z axis is a size reference to the input z axis. bioimageio.spec computes
`out = ref * ref_scale / out_scale + offset` while deepImageJ (JDLL) computes
`out = ref * out_scale + 2 * offset`; both give r times the input depth only with input z scale
r*r, output z scale r and offset 0. The scales are therefore not voxel sizes (those are in the
model card and `config.sparsessp`), which is also why the axes carry no unit.
"""

from __future__ import annotations

from bioimageio.spec.model import v0_5

from sparsessp_bmz.spec import XY_MULTIPLE, ModelSpec

INPUT_ID = "raw"
OUTPUT_ID = "prediction"
#: Output y/x voxels a tiling consumer crops from each side of a tile: the 5-level UNet sees far
#: beyond its tile, so border voxels are the least reliable ones of a tile.
XY_HALO = 8
#: Smallest input y/x: one XY_MULTIPLE more than the net needs, so that the halo leaves voxels.
XY_MIN = 2 * XY_MULTIPLE


def z_scales(ratio: int) -> tuple[float, float]:
    """(input z scale, output z scale) on which bioimageio.spec and deepImageJ agree."""
    return float(ratio * ratio), float(ratio)


def input_z_size(spec: ModelSpec) -> int | v0_5.ParameterizedSize:
    """The exact sparse depth for depth-folding topologies, else min/step from the z pooling."""
    if spec.fixed_depth:
        return spec.input_patch[0]
    step = spec.input_depth_step
    return v0_5.ParameterizedSize(min=step, step=step)


def input_axes(spec: ModelSpec) -> list[v0_5.InputAxis]:
    """batch, channel, z, y, x of the sparse TL input."""
    z_in, _ = z_scales(spec.ratio)
    xy = v0_5.ParameterizedSize(min=XY_MIN, step=XY_MULTIPLE)
    return [
        v0_5.BatchAxis(),
        v0_5.ChannelAxis(channel_names=[v0_5.Identifier("transmitted_light")]),
        v0_5.SpaceInputAxis(id=v0_5.AxisId("z"), size=input_z_size(spec), scale=z_in),
        v0_5.SpaceInputAxis(id=v0_5.AxisId("y"), size=xy),
        v0_5.SpaceInputAxis(id=v0_5.AxisId("x"), size=xy),
    ]


def _reference(axis: str) -> v0_5.SizeReference:
    return v0_5.SizeReference(
        tensor_id=v0_5.TensorId(INPUT_ID), axis_id=v0_5.AxisId(axis), offset=0
    )


def output_axes(spec: ModelSpec) -> list[v0_5.OutputAxis]:
    """batch, channel, z (r times the input depth), y, x (input size, tiled with a halo)."""
    _, z_out = z_scales(spec.ratio)
    return [
        v0_5.BatchAxis(),
        v0_5.ChannelAxis(channel_names=[v0_5.Identifier(spec.organelle.lower())]),
        v0_5.SpaceOutputAxis(id=v0_5.AxisId("z"), size=_reference("z"), scale=z_out),
        v0_5.SpaceOutputAxisWithHalo(id=v0_5.AxisId("y"), size=_reference("y"), halo=XY_HALO),
        v0_5.SpaceOutputAxisWithHalo(id=v0_5.AxisId("x"), size=_reference("x"), halo=XY_HALO),
    ]
