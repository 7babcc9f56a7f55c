"""The SparseSSP network: a 5-level residual UNet whose halves are 2D or 3D (paper section 3).

One class covers the four topologies. The topology only decides three things: the dimensionality of
the encoder, the dimensionality of the decoder, and the transform applied to every encoder level
(skip connections and bottleneck) on its way to the decoder:

    topology   encoder              transform              decoder
    3d         3D, C_k channels     identity               3D, C_k
    2d         2D, z as channels    identity               2D, C_k
    3to2d      3D, C_k              depth-to-channel -> U  2D, U at every level
    2to3d      2D, z as channels    channel-to-depth       3D, C_k

Contract: input (B, 1, D/r, H, W) sparse TL, output (B, 1, D, H, W) fluorescence. A multi-task
network (spec.embedding != 'none') also takes the task index per sample; without one it predicts
`spec.organelle`, and `baked()` turns it into a task-free network for that organelle.

The description `spec` is anything with `GeometryMixin`: the project's pydantic `ModelSpec`, or the
plain `NetGeometry` a shipped package builds from (see `geometry` for why there are two).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsessp_bmz.nets.blocks import ResidualBlock, conv, downsample, upsample
from sparsessp_bmz.nets.embeddings import DynamicHead, TaskSequential, bake
from sparsessp_bmz.nets.geometry import GeometryMixin
from sparsessp_bmz.nets.transforms import (
    ChannelToDepth,
    DepthToChannel,
    PostfixUpsample,
    PrefixUpsample,
)


def _level_scale(dims: int, pool_z: bool) -> tuple[int, ...]:
    """Down/upsampling factors between two levels: y and x always halve, z where scheduled."""
    return (2, 2) if dims == 2 else (2 if pool_z else 1, 2, 2)


class SparseSSPNet(nn.Module):
    """Sparse TL stack in, dense fluorescence stack out, for any topology a description allows."""

    def __init__(self, spec: GeometryMixin) -> None:
        super().__init__()
        self.spec = spec
        topology = spec.topology
        self.encoder_dims = 3 if topology in ("3d", "3to2d") else 2
        self.decoder_dims = 3 if topology in ("3d", "2to3d") else 2
        channels = spec.encoder_channels
        depths = spec.level_depths
        pools = spec.z_pools

        self.prefix = PrefixUpsample(spec.ratio) if spec.interpolation == "prefix" else None

        self.conditioned = spec.num_tasks > 0
        embedding, tasks = spec.embedding, spec.num_tasks

        enc_in = 1 if self.encoder_dims == 3 else spec.grid_depth
        self.encoder = nn.ModuleList()
        for level, out_ch in enumerate(channels):
            in_ch = enc_in if level == 0 else channels[level - 1]
            block = ResidualBlock(self.encoder_dims, in_ch, out_ch, embedding, tasks)
            if level == 0:
                self.encoder.append(TaskSequential(block))
            else:
                scale = _level_scale(self.encoder_dims, pools[level - 1])
                self.encoder.append(TaskSequential(downsample(self.encoder_dims, scale), block))

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
                ResidualBlock(
                    self.decoder_dims, out_ch + skip_channels[level], out_ch, embedding, tasks
                )
            )
            prev = out_ch

        head_out, self.postfix = self._head_shape(spec, prev)
        if embedding == "dodnet":
            self.head: nn.Module = DynamicHead(
                self.decoder_dims, prev, head_out, channels[-1], tasks
            )
        elif self.decoder_dims == 3 and self.postfix is not None:
            self.head = nn.Identity()
        else:
            self.head = conv(self.decoder_dims, prev, head_out)

    def _head_shape(self, spec: GeometryMixin, in_ch: int) -> tuple[int, nn.Module | None]:
        """Output channels of the head, and the postfix upsampler that follows it, if any.

        A 3D decoder ends in one channel (or hands its features to the postfix upsampler). A 2D
        decoder emits depth as channels: D of them, or C_1 features per sparse slice that the
        postfix upsampler turns into D slices.
        """
        postfix_ch = spec.encoder_channels[0]
        if self.decoder_dims == 3:
            if spec.interpolation == "postfix":
                return in_ch, PostfixUpsample(in_ch, spec.ratio)
            return 1, None
        if spec.interpolation == "postfix":
            return postfix_ch * spec.input_patch[0], PostfixUpsample(postfix_ch, spec.ratio)
        return spec.patch[0], None

    def baked(self, organelle: str | None = None) -> "SparseSSPNet":
        """A task-free copy predicting `organelle` (default `spec.organelle`), in eval mode.

        This is what a bioimage.io package ships: its spec names that organelle, and
        `build_package_net` rebuilds exactly this structure. `spec.for_task` keeps the kind of
        description (ModelSpec or NetGeometry).
        """
        spec = self.spec if organelle is None else self.spec.for_task(organelle)
        net = bake(self, spec.task_index)
        net.spec = spec
        net.conditioned = False
        return net.eval()

    def forward(self, x: Tensor, task: Tensor | None = None) -> Tensor:
        code = self._task_code(x, task) if self.conditioned else None
        if self.prefix is not None:
            x = self.prefix(x)
        if self.encoder_dims == 2:
            x = x.flatten(1, 2)
        skips = []
        for level in self.encoder:
            x = level(x, code)
            skips.append(x)
        x = self.transforms[-1](skips[-1])
        for up, block, skip, transform in zip(
            self.ups,
            self.decoder,
            reversed(skips[:-1]),
            reversed(self.transforms[:-1]),
            strict=True,
        ):
            x = block(torch.cat((up(x), transform(skip)), dim=1), code)
        x = self.head(x, skips[-1], code) if isinstance(self.head, DynamicHead) else self.head(x)
        if self.decoder_dims == 2:
            x = x.unsqueeze(1) if self.postfix is None else self._unfold(x)
        return x if self.postfix is None else self.postfix(x)

    def _task_code(self, x: Tensor, task: Tensor | None) -> Tensor:
        """One-hot (B, T) task code; the spec's organelle for every sample when no task is given."""
        if task is None:
            task = torch.full((x.shape[0],), self.spec.task_index, device=x.device)
        return F.one_hot(task.to(x.device, torch.long), self.spec.num_tasks).to(x.dtype)

    def _unfold(self, x: Tensor) -> Tensor:
        """(B, C_1 * D/r, H, W) -> (B, C_1, D/r, H, W) for the postfix upsampler."""
        return x.unflatten(1, (-1, self.spec.input_patch[0]))
