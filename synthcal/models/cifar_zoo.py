"""The CIFAR-10 model zoo: checkpoint-compatible versions of the 19 chenyaofo/pytorch-cifar-models networks.

Every model's ``state_dict`` has the keys (in order) and shapes of the published
checkpoints, so they load with ``load_state_dict(strict=True)``. Every model has
``forward_features(x)`` (the input of the final Linear layer, shape (N, D)) and
``forward(x)`` (that Linear applied to it). Inputs are normalised float32 NCHW
RGB (``ZOO_INPUT`` in ``synthcal.models.zoo`` bakes that normalisation into the IR).
The architectures follow ``shared/reference/ARCHITECTURES.md``.
"""

from __future__ import annotations

import copy
import functools
import json
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

MODEL_NAMES = (
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "mobilenetv2_x0_5",
    "mobilenetv2_x0_75",
    "mobilenetv2_x1_0",
    "mobilenetv2_x1_4",
    "shufflenetv2_x0_5",
    "shufflenetv2_x1_0",
    "shufflenetv2_x1_5",
    "shufflenetv2_x2_0",
    "repvgg_a0",
    "repvgg_a1",
    "repvgg_a2",
)

NUM_CLASSES = 10
_ZOO_JSON = Path(__file__).with_name("model_zoo.json")


def _check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(MODEL_NAMES)}")


# ---------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: int, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = self._make_stage(16, 16, blocks_per_stage, stride=1)
        self.layer2 = self._make_stage(16, 32, blocks_per_stage, stride=2)
        self.layer3 = self._make_stage(32, 64, blocks_per_stage, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    @staticmethod
    def _make_stage(in_channels: int, out_channels: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_channels, out_channels, stride)]
        blocks += [BasicBlock(out_channels, out_channels, 1) for _ in range(num_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


# ---------------------------------------------------------------- VGG

_VGG_CONFIGS = {
    "vgg11_bn": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13_bn": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16_bn": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19_bn": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                 512, 512, 512, 512, "M"],
}  # fmt: skip


class CifarVGG(nn.Module):
    def __init__(self, config: list, num_classes: int = NUM_CLASSES):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU()]
                in_channels = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(512, 512),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(512, num_classes),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)
        return self.classifier[:-1](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[-1](self.forward_features(x))


# ---------------------------------------------------------------- MobileNetV2

_MOBILENET_WIDTHS = {
    "mobilenetv2_x0_5": 0.5,
    "mobilenetv2_x0_75": 0.75,
    "mobilenetv2_x1_0": 1.0,
    "mobilenetv2_x1_4": 1.4,
}
# (expansion t, channels c, repeats n, stride s of the first repeat), CIFAR strides
_MOBILENET_ROWS = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                   (6, 320, 1, 1)]  # fmt: skip


def _make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNReLU6(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = int(round(in_channels * expansion))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNReLU6(in_channels, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class CifarMobileNetV2(nn.Module):
    def __init__(self, width: float, num_classes: int = NUM_CLASSES):
        super().__init__()
        in_channels = _make_divisible(32 * width)
        last_channels = _make_divisible(1280 * max(1.0, width))
        features: list[nn.Module] = [ConvBNReLU6(3, in_channels, stride=1)]
        for expansion, channels, repeats, first_stride in _MOBILENET_ROWS:
            out_channels = _make_divisible(channels * width)
            for i in range(repeats):
                features.append(InvertedResidual(in_channels, out_channels, first_stride if i == 0 else 1, expansion))
                in_channels = out_channels
        features.append(ConvBNReLU6(in_channels, last_channels, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channels, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


# ---------------------------------------------------------------- ShuffleNetV2

_SHUFFLENET_CHANNELS = {
    "shufflenetv2_x0_5": [24, 48, 96, 192, 1024],
    "shufflenetv2_x1_0": [24, 116, 232, 464, 1024],
    "shufflenetv2_x1_5": [24, 176, 352, 704, 1024],
    "shufflenetv2_x2_0": [24, 244, 488, 976, 2048],
}
_SHUFFLENET_REPEATS = [4, 8, 4]


def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        branch_channels = out_channels // 2
        if stride == 1 and in_channels != 2 * branch_channels:
            raise ValueError("a stride-1 ShuffleNetV2 unit needs in_channels == out_channels")
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, branch_channels, 1, bias=False),
                nn.BatchNorm2d(branch_channels),
                nn.ReLU(),
            )
        else:
            self.branch1 = nn.Sequential()
        branch2_in = in_channels if stride > 1 else branch_channels
        self.branch2 = nn.Sequential(
            nn.Conv2d(branch2_in, branch_channels, 1, bias=False),
            nn.BatchNorm2d(branch_channels),
            nn.ReLU(),
            nn.Conv2d(branch_channels, branch_channels, 3, stride, 1, groups=branch_channels, bias=False),
            nn.BatchNorm2d(branch_channels),
            nn.Conv2d(branch_channels, branch_channels, 1, bias=False),
            nn.BatchNorm2d(branch_channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return _channel_shuffle(out, 2)


class CifarShuffleNetV2(nn.Module):
    def __init__(self, channels: list[int], num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, channels[0], 3, 1, 1, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU()
        )
        in_channels = channels[0]
        for stage_index, (repeats, out_channels) in enumerate(zip(_SHUFFLENET_REPEATS, channels[1:4], strict=True)):
            units = [ShuffleUnit(in_channels, out_channels, 2)]
            units += [ShuffleUnit(out_channels, out_channels, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{stage_index + 2}", nn.Sequential(*units))
            in_channels = out_channels
        self.conv5 = nn.Sequential(
            nn.Conv2d(in_channels, channels[4], 1, bias=False), nn.BatchNorm2d(channels[4]), nn.ReLU()
        )
        self.fc = nn.Linear(channels[4], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.conv5(x).mean([2, 3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


# ---------------------------------------------------------------- RepVGG

_REPVGG_WIDTHS = {
    "repvgg_a0": (0.75, 0.75, 0.75, 2.5),
    "repvgg_a1": (1.0, 1.0, 1.0, 2.5),
    "repvgg_a2": (1.5, 1.5, 1.5, 2.75),
}
_REPVGG_BLOCKS = (2, 4, 14, 1)


class ConvBN(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)


def _fold_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the preceding (bias-free) kernel; computed in float64."""
    std = (bn.running_var.double() + bn.eps).sqrt()
    scale = bn.weight.double() / std
    folded_kernel = kernel.double() * scale.reshape(-1, 1, 1, 1)
    folded_bias = bn.bias.double() - bn.running_mean.double() * scale
    return folded_kernel, folded_bias


class RepVGGBlock(nn.Module):
    """Training form: ReLU(3x3 conv-BN + 1x1 conv-BN + BN(x)); deploy form: ReLU(one 3x3 conv with bias)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        # registered first to match the checkpoints' key order
        self.rbr_identity = nn.BatchNorm2d(in_channels) if in_channels == out_channels and stride == 1 else None
        self.rbr_dense = ConvBN(in_channels, out_channels, 3, stride, 1)
        self.rbr_1x1 = ConvBN(in_channels, out_channels, 1, stride, 0)
        self.rbr_reparam = None
        self.nonlinearity = nn.ReLU()

    @property
    def deployed(self) -> bool:
        return self.rbr_reparam is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rbr_reparam is not None:
            return self.nonlinearity(self.rbr_reparam(x))
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(x)
        return self.nonlinearity(out)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Replace the branches by the single equivalent 3x3 conv (uses the BN running statistics)."""
        if self.deployed:
            return
        kernel, bias = _fold_bn(self.rbr_dense.conv.weight, self.rbr_dense.bn)
        kernel_1x1, bias_1x1 = _fold_bn(self.rbr_1x1.conv.weight, self.rbr_1x1.bn)
        kernel = kernel + nn.functional.pad(kernel_1x1, [1, 1, 1, 1])
        bias = bias + bias_1x1
        if self.rbr_identity is not None:
            identity = torch.zeros(self.in_channels, self.in_channels, 3, 3, dtype=torch.float64)
            identity[torch.arange(self.in_channels), torch.arange(self.in_channels), 1, 1] = 1.0
            kernel_id, bias_id = _fold_bn(identity, self.rbr_identity)
            kernel, bias = kernel + kernel_id, bias + bias_id
        dtype = self.rbr_dense.conv.weight.dtype
        reparam = nn.Conv2d(self.in_channels, self.out_channels, 3, self.stride, 1, bias=True)
        reparam.weight.copy_(kernel.to(dtype))
        reparam.bias.copy_(bias.to(dtype))
        self.rbr_reparam = reparam
        self.rbr_dense = self.rbr_1x1 = self.rbr_identity = None


class CifarRepVGG(nn.Module):
    def __init__(self, widths: tuple[float, float, float, float], num_classes: int = NUM_CLASSES):
        super().__init__()
        in_channels = min(64, int(64 * widths[0]))
        self.stage0 = RepVGGBlock(3, in_channels, stride=1)
        stage_channels = (int(64 * widths[0]), int(128 * widths[1]), int(256 * widths[2]), int(512 * widths[3]))
        stage_strides = (1, 2, 2, 2)
        for index, (num_blocks, out_channels, stride) in enumerate(
            zip(_REPVGG_BLOCKS, stage_channels, stage_strides, strict=True)
        ):
            blocks = []
            for block_index in range(num_blocks):
                blocks.append(RepVGGBlock(in_channels, out_channels, stride if block_index == 0 else 1))
                in_channels = out_channels
            setattr(self, f"stage{index + 1}", nn.Sequential(*blocks))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage0(x)
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return torch.flatten(self.gap(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.forward_features(x))


def reparameterize_repvgg(model: nn.Module) -> nn.Module:
    """Return a new eval-mode deploy-form copy of a RepVGG model: one 3x3 conv with bias per block."""
    if not isinstance(model, CifarRepVGG):
        raise ValueError(f"reparameterize_repvgg needs a RepVGG model, got {type(model).__name__}")
    deployed = copy.deepcopy(model).eval()
    for module in deployed.modules():
        if isinstance(module, RepVGGBlock):
            module.switch_to_deploy()
    return deployed


# ---------------------------------------------------------------- public helpers


def build_model(name: str) -> nn.Module:
    """Build an untrained CIFAR-10 model whose state_dict matches the published checkpoint of ``name``."""
    _check_name(name)
    if name.startswith("resnet"):
        depth = int(name.removeprefix("resnet"))
        return CifarResNet((depth - 2) // 6)
    if name in _VGG_CONFIGS:
        return CifarVGG(_VGG_CONFIGS[name])
    if name in _MOBILENET_WIDTHS:
        return CifarMobileNetV2(_MOBILENET_WIDTHS[name])
    if name in _SHUFFLENET_CHANNELS:
        return CifarShuffleNetV2(_SHUFFLENET_CHANNELS[name])
    return CifarRepVGG(_REPVGG_WIDTHS[name])


@functools.cache
def _zoo_table() -> dict:
    return json.loads(_ZOO_JSON.read_text())


def zoo_info(name: str) -> dict:
    """Release facts of a model: ``url``, ``sha256_prefix``, ``sha256`` (or None), ``top1``, ``top5``."""
    _check_name(name)
    return dict(_zoo_table()[name])


def synthetic_state_dict(model: nn.Module, stats: dict, prefix: str = "") -> dict:
    """The synthetic weights recipe of ../shared/reference/ARCHITECTURES.md (for architectures whose real weights
    are missing): seeded by each key's CRC32; running statistics come from ``stats[prefix + key]``."""
    state = {}
    for key, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        if key.endswith(("running_mean", "running_var")):
            value = stats[prefix + key]
        elif key.endswith("bias"):
            value = rng.normal(0, 0.1, shape)
        elif len(shape) == 1:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0, np.sqrt(2 / np.prod(shape[1:])), shape)
        state[key] = torch.from_numpy(np.asarray(value, dtype=np.float32))
    return state
