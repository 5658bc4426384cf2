"""Five architectures from outside netclaims' registry, written as a user would.

Each is a factory ``make(input_shape, num_classes, **knobs)``; run the claims on one with
``pytest claims/ --netclaims-arch examples.architectures:conv1d_bn`` (add
``--netclaims-task digits`` for the image nets). They differ in what they offer:

========================  ==========  ===========================================
factory                   task        knobs and structure
========================  ==========  ===========================================
``conv1d_bn``             mnist1d     1-D conv net with batch norm, no knobs
``mlp_dropout``           mnist1d     MLP without batch norm, a ``dropout`` knob
``cnn2d``                 digits      2-D conv net, a ``width`` knob
``basicblock_resnet``     digits      ResNet of torchvision ``BasicBlock`` (a ReLU
                                      module called twice per block)
``small_vit``             digits      ViT of ``nn.MultiheadAttention`` + ``nn.GELU``
                                      (token × feature activations)
========================  ==========  ===========================================
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock


def conv1d_bn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Conv(32) → BN → ReLU → pool → Conv(64) → BN → ReLU → pool → Linear(128) → ReLU → out."""
    channels, length = input_shape
    return nn.Sequential(
        nn.Conv1d(channels, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(32, 64, 3, padding=1), nn.BatchNorm1d(64), nn.ReLU(), nn.MaxPool1d(2),
        nn.Flatten(), nn.Linear(64 * (length // 4), 128), nn.ReLU(),
        nn.Linear(128, num_classes))


def mlp_dropout(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0
                ) -> nn.Module:
    """Three hidden layers of 128 ReLU units, each followed by dropout."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for _ in range(3):
        layers += [nn.Linear(width, 128), nn.ReLU(), nn.Dropout(dropout)]
        width = 128
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


class CNN2d(nn.Module):
    """Two 3×3 conv layers, global average pooling, a dense layer."""

    def __init__(self, channels: int, num_classes: int, width: float) -> None:
        super().__init__()
        c1, c2 = max(1, round(16 * width)), max(1, round(32 * width))
        self.features = nn.Sequential(nn.Conv2d(channels, c1, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dense = nn.Sequential(nn.Linear(c2, 64), nn.ReLU())
        self.out = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.dense(self.features(x)))


def cnn2d(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    return CNN2d(input_shape[0], num_classes, width)


class BasicBlockResNet(nn.Module):
    """Stem conv → two stages of torchvision ``BasicBlock`` (16 and 32 channels, the second
    downsampling) → global average pooling → classifier."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, 16, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU())
        down = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32))
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, stride=2, downsample=down)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.head(x.mean((2, 3)))


def basicblock_resnet(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return BasicBlockResNet(input_shape[0], num_classes)


class Block(nn.Module):
    """Pre-norm transformer block: attention, then an MLP with a GELU module."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class SmallViT(nn.Module):
    """2×2 patches of a (channels, h, w) image → 32-d tokens with learned positions → two
    blocks → mean over tokens → classifier."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, dim: int = 32) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.patch = nn.Conv2d(channels, dim, 2, stride=2)
        tokens = (height // 2) * (width // 2)
        self.position = nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = nn.Sequential(Block(dim, 4), Block(dim, 4))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2) + self.position
        return self.head(self.norm(self.blocks(tokens)).mean(1))


def small_vit(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return SmallViT(input_shape, num_classes)
