"""A user's own CIFAR ResNet-20, written their way (module names differ from synthcal's zoo).

It expects ImageNet-normalised input: (pixels / 255 - mean) / std with ImageNet's mean and std.
"""

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        skip = x if self.proj is None else self.proj(x)
        return torch.relu(self.n2(self.c2(torch.relu(self.n1(self.c1(x))))) + skip)


class Net(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10):
        super().__init__()
        per_stage = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=True), nn.BatchNorm2d(16), nn.ReLU())
        stages, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            stages.append(nn.Sequential(*[Block(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                          for i in range(per_stage)]))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet20(num_classes: int = 10) -> Net:
    return Net(20, num_classes)
