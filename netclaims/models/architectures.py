"""The built-in architectures. Each works on vectors, sequences ``(c, length)`` or images
``(c, h, w)`` where that makes sense, and declares

* ``netclaims_stages``: stage name → unit layers (outputs of ReLU modules), early to late;
* ``netclaims_preactivations``: unit layer → the module whose output is that layer's
  pre-activation (after batch norm, before the ReLU), for the intraclass-clustering measures;
* ``netclaims_block_outputs`` (residual nets only): stage name → the layers where the blocks'
  outputs are read as units, for protocols that read the network block by block (the
  early-epochs paper's "bottleneck layers"); a plain net's unit layers are its block outputs.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from netclaims.units import Stages


def _conv(dims: int) -> type[nn.Module]:
    return {1: nn.Conv1d, 2: nn.Conv2d}[dims]


def _bn(dims: int) -> type[nn.Module]:
    return {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]


def _spatial_dims(input_shape: tuple[int, ...], name: str, allowed: tuple[int, ...]) -> int:
    dims = len(input_shape) - 1
    if dims not in allowed:
        raise ValueError(f"{name} takes inputs of shape {' or '.join(_SHAPES[d] for d in allowed)}"
                         f", got {input_shape}")
    return dims


_SHAPES = {0: "(features,)", 1: "(channels, length)", 2: "(channels, height, width)"}


def _block(named: list[tuple[str, nn.Module | None]]) -> nn.Sequential:
    return nn.Sequential(OrderedDict((k, m) for k, m in named if m is not None))


def declare(module: nn.Module, **declarations: object) -> None:
    """Attach netclaims declarations (``netclaims_stages``, ``netclaims_unit_axis``, …) to a
    module: plain attributes, which ``nn.Module.__setattr__`` stores as ``object`` does (its
    type hints admit only tensors and modules)."""
    for name, value in declarations.items():
        object.__setattr__(module, name, value)


def _declare(model: nn.Module, units: list[str], preacts: list[str],
             stages: dict[str, list[str]]) -> None:
    declare(model, netclaims_stages={k: v for k, v in stages.items() if v},
            netclaims_preactivations=dict(zip(units, preacts, strict=True)))


def default_stages(units: list[str]) -> dict[str, list[str]]:
    """Depth-ordered unit layers split into thirds (early / intermediate / late); with fewer
    than three layers, the first is early and the rest late. Empty stages are left out."""
    if len(units) >= 3:
        return {name: list(layers) for name, layers in Stages.by_depth(units).groups}
    return {k: v for k, v in (("early", units[:1]), ("late", units[1:])) if v}


class MLP(nn.Module):
    """Fully connected ReLU network: ``round(3 · depth)`` hidden layers of
    ``round(256 · width)`` units (Linear → [BatchNorm] → ReLU → [Dropout])."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, *, width: float = 1.0,
                 depth: float = 1.0, batchnorm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        hidden, layers = max(1, round(256 * width)), max(1, round(3 * depth))
        prev = math.prod(input_shape)
        self.flatten = nn.Flatten()
        blocks = []
        for _ in range(layers):
            blocks.append(_block([("linear", nn.Linear(prev, hidden)),
                                  ("bn", nn.BatchNorm1d(hidden) if batchnorm else None),
                                  ("act", nn.ReLU()),
                                  ("drop", nn.Dropout(dropout) if dropout else None)]))
            prev = hidden
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(prev, num_classes)
        units = [f"blocks.{i}.act" for i in range(layers)]
        pre = [f"blocks.{i}.{'bn' if batchnorm else 'linear'}" for i in range(layers)]
        _declare(self, units, pre, default_stages(units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.flatten(x)))


class ConvNet(nn.Module):
    """Conv net in the style of Morcos et al. 2018: ``round(3 · depth)`` conv layers
    (channels 32, 32, 64, … × width; kernel 5 for sequences, 3 for images; stride 2 on the
    first two), then one dense layer of ``round(128 · width)`` units and the classifier."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, *, width: float = 1.0,
                 depth: float = 1.0, batchnorm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        dims = _spatial_dims(input_shape, "convnet", (1, 2))
        n_conv = max(1, round(3 * depth))
        base = [32, 32] + [64] * max(0, n_conv - 2)
        channels = [max(1, round(c * width)) for c in base[:n_conv]]
        kernel = 5 if dims == 1 else 3
        conv, bn = _conv(dims), _bn(dims)
        blocks, prev = [], input_shape[0]
        for i, c in enumerate(channels):
            blocks.append(_block([
                ("conv", conv(prev, c, kernel, stride=2 if i < 2 else 1, padding=kernel // 2)),
                ("bn", bn(c) if batchnorm else None), ("act", nn.ReLU()),
                ("drop", nn.Dropout(dropout) if dropout else None)]))
            prev = c
        self.features = nn.Sequential(*blocks)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *input_shape)).numel()
        hidden = max(1, round(128 * width))
        self.flatten = nn.Flatten()
        self.dense = _block([("linear", nn.Linear(flat, hidden)),
                             ("bn", nn.BatchNorm1d(hidden) if batchnorm else None),
                             ("act", nn.ReLU()),
                             ("drop", nn.Dropout(dropout) if dropout else None)])
        self.head = nn.Linear(hidden, num_classes)
        convs = [f"features.{i}.act" for i in range(n_conv)]
        units = [*convs, "dense.act"]
        pre = [f"features.{i}.{'bn' if batchnorm else 'conv'}" for i in range(n_conv)]
        pre.append(f"dense.{'bn' if batchnorm else 'linear'}")
        stages = {"early": convs[:1], "intermediate": convs[1:], "late": ["dense.act"]}
        _declare(self, units, pre, stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dense(self.flatten(self.features(x))))


class PreActBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016): BN → ReLU → conv → BN → ReLU → conv,
    plus the identity (or a 1×1 conv of the pre-activated input when the shape changes)."""

    def __init__(self, dims: int, cin: int, cout: int, stride: int, batchnorm: bool,
                 dropout: float) -> None:
        super().__init__()
        conv, bn = _conv(dims), _bn(dims)
        self.bn1 = bn(cin) if batchnorm else nn.Identity()
        self.relu1 = nn.ReLU()
        self.conv1 = conv(cin, cout, 3, stride=stride, padding=1, bias=not batchnorm)
        self.bn2 = bn(cout) if batchnorm else nn.Identity()
        self.relu2 = nn.ReLU()
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.conv2 = conv(cout, cout, 3, padding=1, bias=not batchnorm)
        self.shortcut = (conv(cin, cout, 1, stride=stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.drop(self.relu2(self.bn2(out))))
        return out + skip


class PreActResNet18(nn.Module):
    """Pre-activation ResNet-18 with width parameter ``k = round(16 · width)``: stages of
    ``k, 2k, 4k, 8k`` channels (Nakkiran et al. 2019 vary k from 1 to 64; the standard
    network is k = 64, width 4), ``round(2 · depth)`` blocks per stage, for sequences (1-D
    convs) or images. Stages: early = layer1, intermediate = layer2-3, late = layer4 and the
    final BN-ReLU; block outputs: each block's output as the next block's first ReLU reads it
    (the last block's: the final BN-ReLU)."""

    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, *, width: float = 1.0,
                 depth: float = 1.0, batchnorm: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        dims = _spatial_dims(input_shape, "resnet18", (1, 2))
        k = max(1, round(16 * width))
        blocks_per_stage = max(1, round(2 * depth))
        conv, bn = _conv(dims), _bn(dims)
        self.stem = conv(input_shape[0], k, 3, padding=1, bias=not batchnorm)
        prev, units, pre, stage_units = k, [], [], []
        for s, (mult, stride) in enumerate(zip((1, 2, 4, 8), (1, 2, 2, 2), strict=True)):
            layer, names = [], []
            for b in range(blocks_per_stage):
                layer.append(PreActBlock(dims, prev, k * mult, stride if b == 0 else 1,
                                         batchnorm, dropout))
                prev = k * mult
                names += [f"layer{s + 1}.{b}.relu1", f"layer{s + 1}.{b}.relu2"]
                if batchnorm:
                    pre += [f"layer{s + 1}.{b}.bn1", f"layer{s + 1}.{b}.bn2"]
                else:  # the ReLUs then act on the block's input and on conv1's output
                    pre += [_previous_output(s, b), f"layer{s + 1}.{b}.conv1"]
            setattr(self, f"layer{s + 1}", nn.Sequential(*layer))
            units += names
            stage_units.append(names)
        self.final_bn = bn(prev) if batchnorm else nn.Identity()
        self.final_relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(prev, num_classes)
        units.append("final_relu")
        pre.append("final_bn" if batchnorm else "layer4")
        stages = {"early": stage_units[0], "intermediate": stage_units[1] + stage_units[2],
                  "late": [*stage_units[3], "final_relu"]}
        _declare(self, units, pre, stages)
        # a pre-activation block's output is read, as a non-negative unit, by the next
        # block's first ReLU (relu(bn1(output))), the last one's by the final BN-ReLU
        reads = [names[0::2] for names in stage_units]
        first_relus = [name for stage in reads for name in stage]
        readers = iter([*first_relus[1:], "final_relu"])
        outputs = [[next(readers) for _ in stage] for stage in reads]
        declare(self, netclaims_block_outputs={"early": outputs[0],
                                               "intermediate": outputs[1] + outputs[2],
                                               "late": outputs[3]})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.head(self.pool(self.final_relu(self.final_bn(x))).flatten(1))


def _previous_output(stage: int, block: int) -> str:
    """Without batch norm, a block's first pre-activation is its input: the previous
    block's output (the stem for the very first block)."""
    if stage == 0 and block == 0:
        return "stem"
    if block > 0:
        return f"layer{stage + 1}.{block - 1}"
    return f"layer{stage}"


class VGG(nn.Module):
    """Four-stage VGG: stages of ``round(1, 1, 2, 2 × depth)`` 3×3 (or 3-wide) conv layers
    with ``16, 32, 64, 128 × width`` channels, max pooling after each stage, global average
    pooling, one dense layer and the classifier."""

    stage1: nn.Sequential
    stage2: nn.Sequential
    stage3: nn.Sequential
    stage4: nn.Sequential

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, *, width: float = 1.0,
                 depth: float = 1.0, batchnorm: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        dims = _spatial_dims(input_shape, "vgg", (1, 2))
        conv, bn = _conv(dims), _bn(dims)
        pool = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
        prev, units, pre, stage_units = input_shape[0], [], [], []
        for s, (n_conv, c) in enumerate(zip((1, 1, 2, 2), (16, 32, 64, 128), strict=True)):
            c = max(1, round(c * width))
            layers: list[nn.Module] = []
            names: list[str] = []
            for i in range(max(1, round(n_conv * depth))):
                layers.append(_block([("conv", conv(prev, c, 3, padding=1)),
                                      ("bn", bn(c) if batchnorm else None),
                                      ("act", nn.ReLU())]))
                prev = c
                names.append(f"stage{s + 1}.{i}.act")
                pre.append(f"stage{s + 1}.{i}.{'bn' if batchnorm else 'conv'}")
            layers.append(pool(2, ceil_mode=True))
            setattr(self, f"stage{s + 1}", nn.Sequential(*layers))
            units += names
            stage_units.append(names)
        self.pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        hidden = max(1, round(128 * width))
        self.dense = _block([("linear", nn.Linear(prev, hidden)), ("act", nn.ReLU()),
                             ("drop", nn.Dropout(dropout) if dropout else None)])
        self.head = nn.Linear(hidden, num_classes)
        units.append("dense.act")
        pre.append("dense.linear")
        stages = {"early": stage_units[0], "intermediate": stage_units[1] + stage_units[2],
                  "late": [*stage_units[3], "dense.act"]}
        _declare(self, units, pre, stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return self.head(self.dense(self.pool(x).flatten(1)))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block; its MLP's ReLU output is the unit layer (token features,
    so the unit axis is the last one)."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.act = nn.ReLU()
        declare(self.act, netclaims_unit_axis=-1)
        declare(self.fc1, netclaims_unit_axis=-1)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(self.drop(self.act(self.fc1(self.ln2(x)))))


class PatchTransformer(nn.Module):
    """Small transformer over patches: sequences are cut into patches of 4 positions (images
    into 2×2 patches), embedded in ``d = round(64 · width)`` dimensions with learned positions,
    passed through ``round(3 · depth)`` blocks of 4 heads, mean-pooled and classified."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, *, width: float = 1.0,
                 depth: float = 1.0, batchnorm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if batchnorm:
            raise ValueError("the transformer uses layer norm; batchnorm=True is not offered")
        dims = _spatial_dims(input_shape, "transformer", (1, 2))
        self.patch = 4 if dims == 1 else 2
        d = max(4, round(64 * width / 4) * 4)
        with torch.no_grad():
            tokens = self._patches(torch.zeros(1, *input_shape))
        self.embed = nn.Linear(tokens.shape[-1], d)
        self.position = nn.Parameter(torch.zeros(1, tokens.shape[1], d))
        n_blocks = max(1, round(3 * depth))
        self.blocks = nn.Sequential(*[TransformerBlock(d, 4, dropout) for _ in range(n_blocks)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, num_classes)
        units = [f"blocks.{i}.act" for i in range(n_blocks)]
        _declare(self, units, [f"blocks.{i}.fc1" for i in range(n_blocks)], default_stages(units))

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        if x.ndim == 3:
            x = nn.functional.pad(x, (0, (-x.shape[-1]) % p))
            return x.unfold(-1, p, p).permute(0, 2, 1, 3).flatten(2)
        x = nn.functional.pad(x, (0, (-x.shape[-1]) % p, 0, (-x.shape[-2]) % p))
        x = x.unfold(2, p, p).unfold(3, p, p)
        return x.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(self._patches(x)) + self.position
        return self.head(self.ln(self.blocks(h)).mean(1))
