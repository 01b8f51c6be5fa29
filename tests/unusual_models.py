"""Small models with unusual parameters, shared by the graph and optimizer edge-case tests."""
import torch
from torch import nn


class Tied(nn.Module):
    """Two layers sharing one weight tensor (like tied embeddings)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class WithScalar(nn.Module):
    """A scalar parameter (a learned temperature)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.temperature = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return self.fc(x) / self.temperature


class WithEmpty(nn.Module):
    """A zero-size layer next to a real one (a width-0 branch)."""

    def __init__(self):
        super().__init__()
        self.fc, self.empty = nn.Linear(4, 3), nn.Linear(4, 0)

    def forward(self, x):
        return torch.cat([self.fc(x), self.empty(x)], -1)
