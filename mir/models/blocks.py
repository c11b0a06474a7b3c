"""Building blocks of the taggers: plain ``nn.Module``s with typed keyword arguments.

Every block works on 4-D tensors ``[batch, channels, freq, time]`` in either memory format
(contiguous or ``torch.channels_last``), under bf16 autocast and under ``torch.compile``:
no data-dependent Python control flow, no in-place ops on views that autograd needs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ResBlock2d(nn.Module):
    """Residual 3×3 conv block of the short-chunk ResNet (Won et al. 2020, ``Res_2d``).

    ``conv3x3(stride) → BN → ReLU → conv3x3 → BN``, plus a shortcut, then ReLU. The shortcut
    is the identity when shape is kept; when the block downsamples it average-pools
    (2×2, ``ceil_mode``, so odd sizes match the strided conv) and, when the width changes, adds a
    1×1 conv + BN ("ResNet-D" shortcut: no information thrown away by a strided 1×1, and far
    fewer parameters than the 3×3 shortcut of the original paper).

    Output spatial size is ``ceil(size / stride)`` on each axis, for any size ≥ 1.
    """

    def __init__(self, *, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False))
        if in_channels != out_channels:
            shortcut += [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.shortcut = nn.Sequential(*shortcut)  # empty Sequential = identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))
