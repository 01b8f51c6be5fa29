"""Learned-optimizer baselines without the graph: per-parameter MLP (FF) and per-tensor LSTM."""
from __future__ import annotations

from typing import Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from l2o_graphs.features import NUM_FEATURES, NUM_TIME_FEATURES
from l2o_graphs.graph import NeuralGraph
from l2o_graphs.nn.base import TensorDict, UpdateNet, flatten_features, mlp, split_outputs


class PerParameterMLP(UpdateNet):
    """"FF": the same small MLP on every parameter element (a DeepSets learned optimizer)."""

    def __init__(self, hidden: int = 32, layers: int = 2):
        super().__init__(hidden=hidden, layers=layers)
        self.inp = nn.Linear(NUM_FEATURES, hidden)
        self.time = nn.Linear(NUM_TIME_FEATURES, hidden, bias=False)
        self.body = mlp(hidden, hidden, 2, layers)

    def forward(self, features: Mapping[str, Tensor], time: Tensor, graph: Optional[NeuralGraph],
                net_state: Mapping[str, Tensor]) -> Tuple[TensorDict, TensorDict]:
        flat, shapes = flatten_features(features)
        out = self.body(torch.relu(self.inp(flat) + self.time(time)))
        return split_outputs(out, shapes), dict(net_state)


class PerTensorLSTM(UpdateNet):
    """One LSTM step per parameter tensor on the tensor's feature statistics; its hidden state
    conditions a per-element MLP (the LSTM baseline of Kofinas et al.)."""

    def __init__(self, hidden: int = 32, layers: int = 2):
        super().__init__(hidden=hidden, layers=layers)
        self.hidden = hidden
        self.cell = nn.LSTMCell(2 * NUM_FEATURES + NUM_TIME_FEATURES, hidden)
        self.inp = nn.Linear(NUM_FEATURES, hidden)
        self.cond = nn.Linear(hidden, hidden, bias=False)
        self.body = mlp(hidden, hidden, 2, layers)

    def init_net_state(self, params: Mapping[str, Tensor]) -> TensorDict:
        return {n: torch.zeros(2 * self.hidden, device=p.device) for n, p in params.items()}

    def forward(self, features: Mapping[str, Tensor], time: Tensor, graph: Optional[NeuralGraph],
                net_state: Mapping[str, Tensor]) -> Tuple[TensorDict, TensorDict]:
        names = list(features)
        stats = []
        for f in features.values():
            flat = f.reshape(-1, f.shape[-1])
            stats.append(torch.cat([flat.mean(0), flat.square().mean(0).sqrt()]))
        stats = torch.stack(stats)
        hc = torch.stack([net_state[n] for n in names])
        h, c = self.cell(torch.cat([stats, time.expand(len(names), -1)], -1),
                         (hc[:, :self.hidden], hc[:, self.hidden:]))
        flat, shapes = flatten_features(features)
        counts = torch.tensor([int(torch.Size(s).numel()) for _, s in shapes], device=flat.device)
        cond = torch.repeat_interleave(self.cond(h), counts, dim=0)
        out = self.body(torch.relu(self.inp(flat) + cond))
        new_state = {n: torch.cat([h[i], c[i]]) for i, n in enumerate(names)}
        return split_outputs(out, shapes), new_state
