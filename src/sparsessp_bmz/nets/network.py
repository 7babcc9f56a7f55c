"""The SparseSSP network: a 5-level residual UNet whose halves are 2D or 3D (paper section 3).

One class covers the four topologies. The topology only decides three things: the dimensionality of
the encoder, the dimensionality of the decoder, and the transform applied to every encoder level
(skip connections and bottleneck) on its way to the decoder:

    topology   encoder              transform              decoder
    3d         3D, C_k channels     identity               3D, C_k
    2d         2D, z as channels    identity               2D, C_k
    3to2d      3D, C_k              depth-to-channel -> U  2D, U at every level
    2to3d      2D, z as channels    channel-to-depth       3D, C_k

Contract: input (B, 1, D/r, H, W) sparse TL, output (B, 1, D, H, W) fluorescence.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sparsessp_bmz.nets.blocks import ResidualBlock, conv, downsample, upsample
from sparsessp_bmz.nets.transforms import (
    ChannelToDepth,
    DepthToChannel,
    PostfixUpsample,
    PrefixUpsample,
)
from sparsessp_bmz.spec import ModelSpec


def _level_scale(dims: int, pool_z: bool) -> tuple[int, ...]:
    """Down/upsampling factors between two levels: y and x always halve, z where scheduled."""
    return (2, 2) if dims == 2 else (2 if pool_z else 1, 2, 2)


class SparseSSPNet(nn.Module):
    """Sparse TL stack in, dense fluorescence stack out, for any topology in `ModelSpec`."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        topology = spec.topology
        self.encoder_dims = 3 if topology in ("3d", "3to2d") else 2
        self.decoder_dims = 3 if topology in ("3d", "2to3d") else 2
        channels = spec.encoder_channels
        depths = spec.level_depths
        pools = spec.z_pools

        self.prefix = PrefixUpsample(spec.ratio) if spec.interpolation == "prefix" else None

        enc_in = 1 if self.encoder_dims == 3 else spec.grid_depth
        self.encoder = nn.ModuleList()
        for level, out_ch in enumerate(channels):
            in_ch = enc_in if level == 0 else channels[level - 1]
            block = ResidualBlock(self.encoder_dims, in_ch, out_ch)
            if level > 0:
                scale = _level_scale(self.encoder_dims, pools[level - 1])
                block = nn.Sequential(downsample(self.encoder_dims, scale), block)
            self.encoder.append(block)

        self.transforms = nn.ModuleList()
        skip_channels: list[int] = []
        for c_k, d_k in zip(channels, depths, strict=True):
            if topology == "3to2d":
                self.transforms.append(DepthToChannel(c_k, d_k, spec.units, spec.projection))
                skip_channels.append(spec.units)
            elif topology == "2to3d":
                self.transforms.append(ChannelToDepth(c_k, d_k, spec.units, spec.projection))
                skip_channels.append(spec.units // d_k)
            else:
                self.transforms.append(nn.Identity())
                skip_channels.append(c_k)

        dec_channels = (spec.units,) * len(channels) if topology == "3to2d" else channels
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        prev = skip_channels[-1]
        for level in reversed(range(len(channels) - 1)):
            out_ch = dec_channels[level]
            scale = _level_scale(self.decoder_dims, pools[level])
            self.ups.append(upsample(self.decoder_dims, prev, out_ch, scale))
            self.decoder.append(
                ResidualBlock(self.decoder_dims, out_ch + skip_channels[level], out_ch)
            )
            prev = out_ch

        self.head, self.postfix = self._build_head(spec, prev)

    def _build_head(self, spec: ModelSpec, in_ch: int) -> tuple[nn.Module, nn.Module | None]:
        """Map the last decoder features to one output channel at the dense depth D.

        A 2D decoder emits depth as channels: D of them, or C_1 features per sparse slice that the
        postfix upsampler turns into D slices.
        """
        postfix_ch = spec.encoder_channels[0]
        if self.decoder_dims == 3:
            if spec.interpolation == "postfix":
                return nn.Identity(), PostfixUpsample(in_ch, spec.ratio)
            return conv(3, in_ch, 1), None
        if spec.interpolation == "postfix":
            head = conv(2, in_ch, postfix_ch * spec.input_patch[0])
            return head, PostfixUpsample(postfix_ch, spec.ratio)
        return conv(2, in_ch, spec.patch[0]), None

    def forward(self, x: Tensor) -> Tensor:
        if self.prefix is not None:
            x = self.prefix(x)
        if self.encoder_dims == 2:
            x = x.flatten(1, 2)
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        x = self.transforms[-1](skips[-1])
        for up, block, skip, transform in zip(
            self.ups,
            self.decoder,
            reversed(skips[:-1]),
            reversed(self.transforms[:-1]),
            strict=True,
        ):
            x = block(torch.cat((up(x), transform(skip)), dim=1))
        x = self.head(x)
        if self.decoder_dims == 2:
            x = x.unsqueeze(1) if self.postfix is None else self._unfold(x)
        return x if self.postfix is None else self.postfix(x)

    def _unfold(self, x: Tensor) -> Tensor:
        """(B, C_1 * D/r, H, W) -> (B, C_1, D/r, H, W) for the postfix upsampler."""
        return x.unflatten(1, (-1, self.spec.input_patch[0]))
