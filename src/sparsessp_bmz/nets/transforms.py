"""The dimension transforms of SparseSSP (paper section 3.2-3.3, Fig. 2).

- Z interpolation: prefix (nearest upsampling of the sparse stack before the network) and postfix
  (a learnable transposed convolution along z after it).
- Depth-to-channel (3D features -> 2D) and channel-to-depth (2D -> 3D), each with the projection
  done in 3D space or in 2D space.

All reshapes use `flatten`/`unflatten` on the traced shapes, so `torch.jit.trace` and the ONNX
exporter keep y and x dynamic.
"""

import torch.nn.functional as F
from torch import Tensor, nn

from sparsessp_bmz.nets.geometry import Projection


class PrefixUpsample(nn.Module):
    """Nearest upsampling along z by r, so the network sees a pseudo-dense grid.

    A scale factor (never a fixed output size) keeps every input depth valid after tracing.
    """

    def __init__(self, ratio: int) -> None:
        super().__init__()
        self.scale = (float(ratio), 1.0, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")


class PostfixUpsample(nn.Module):
    """Learnable z upsampling by r at the end of the network, then a 1x1x1 head to one channel."""

    def __init__(self, channels: int, ratio: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(
            channels, channels, kernel_size=(ratio, 1, 1), stride=(ratio, 1, 1)
        )
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Conv3d(channels, 1, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.act(self.up(x)))


class DepthToChannel(nn.Module):
    """(B, C, D, H, W) -> (B, U, H, W).

    Projection in 3D: a 1x1x1 conv to U/D channels, then fold depth into channels (keeps the 3D
    context until the fold; the paper's better variant). Projection in 2D: fold first, then a 1x1
    conv from C*D to U.
    """

    def __init__(self, channels: int, depth: int, units: int, projection: Projection) -> None:
        super().__init__()
        self.projection = projection
        if projection == "3d":
            self.proj: nn.Module = nn.Conv3d(channels, units // depth, kernel_size=1)
        else:
            self.proj = nn.Conv2d(channels * depth, units, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        if self.projection == "3d":
            return self.proj(x).flatten(1, 2)
        return self.proj(x.flatten(1, 2))


class ChannelToDepth(nn.Module):
    """(B, C, H, W) -> (B, U/D, D, H, W), the mirror of `DepthToChannel`.

    Projection in 3D: unfold the C channels into (C/D, D), then a 1x1x1 conv to U/D channels.
    Projection in 2D: a 1x1 conv from C to U, then unfold into (U/D, D).
    """

    def __init__(self, channels: int, depth: int, units: int, projection: Projection) -> None:
        super().__init__()
        self.projection = projection
        self.depth = depth
        if projection == "3d":
            self.proj: nn.Module = nn.Conv3d(channels // depth, units // depth, kernel_size=1)
        else:
            self.proj = nn.Conv2d(channels, units, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        if self.projection == "3d":
            return self.proj(x.unflatten(1, (-1, self.depth)))
        return self.proj(x).unflatten(1, (-1, self.depth))
