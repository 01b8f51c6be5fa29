"""Learned-optimizer baselines without the graph: per-parameter MLP (FF) and per-tensor LSTM."""
from __future__ import annotations

from typing import Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from l2o_graphs.features import NUM_FEATURES, NUM_TIME_FEATURES
from l2o_graphs.graph import NeuralGraph
from l2o_graphs.nn.base import UpdateNet, chunked, feed_forward, flatten_features, split_outputs
from l2o_graphs.types import TensorDict


class PerParameterMLP(UpdateNet):
    """"FF": the same small MLP on every parameter element (a DeepSets learned optimizer)."""

    def __init__(self, hidden: int = 32, layers: int = 2, update: str = "paper"):
        super().__init__(hidden=hidden, layers=layers, update=update)
        self.inp = nn.Linear(NUM_FEATURES, hidden)
        self.time = nn.Linear(NUM_TIME_FEATURES, hidden, bias=False)
        self.body = feed_forward(hidden, hidden, 2, layers)
        self._init_output(self.body[-1])

    def forward(self, features: Mapping[str, Tensor], time: Tensor, graph: Optional[NeuralGraph],
                net_state: Mapping[str, Tensor], kernels: str = "torch") -> Tuple[TensorDict, TensorDict]:
        flat, shapes = flatten_features(features)
        self.resolve_kernels(kernels, flat.device)  # refuses "triton": no kernels here
        time_bias = self.time(time)
        out = chunked(lambda a, b: self.body(self.inp(flat[a:b]).add_(time_bias).relu_()), flat.shape[0],
                      flat.device)
        return split_outputs(out, shapes), dict(net_state)


class PerTensorLSTM(UpdateNet):
    """One LSTM step per parameter tensor on the tensor's feature statistics; its hidden state
    conditions a per-element MLP (the LSTM baseline of Kofinas et al.)."""

    def __init__(self, hidden: int = 32, layers: int = 2, update: str = "paper"):
        super().__init__(hidden=hidden, layers=layers, update=update)
        self.hidden = hidden
        self.cell = nn.LSTMCell(2 * NUM_FEATURES + NUM_TIME_FEATURES, hidden)
        self.inp = nn.Linear(NUM_FEATURES, hidden)
        self.cond = nn.Linear(hidden, hidden, bias=False)
        self.body = feed_forward(hidden, hidden, 2, layers)
        self._init_output(self.body[-1])

    def init_net_state(self, params: Mapping[str, Tensor]) -> TensorDict:
        return {n: torch.zeros(2 * self.hidden, device=p.device) for n, p in params.items()}

    def forward(self, features: Mapping[str, Tensor], time: Tensor, graph: Optional[NeuralGraph],
                net_state: Mapping[str, Tensor], kernels: str = "torch") -> Tuple[TensorDict, TensorDict]:
        flat, shapes = flatten_features(features)
        self.resolve_kernels(kernels, flat.device)  # refuses "triton": no kernels here
        names = [n for n, _ in shapes]
        counts = [int(torch.Size(s).numel()) for _, s in shapes]
        stats = torch.stack([torch.cat([part.sum(0) / max(n, 1), torch.linalg.vector_norm(part, dim=0) / max(n, 1) ** 0.5])
                             for part, n in zip(torch.split(flat, counts), counts)])  # mean, RMS
        hc = torch.stack([net_state[n] for n in names])
        h, c = self.cell(torch.cat([stats, time.expand(len(names), -1)], -1),
                         (hc[:, :self.hidden], hc[:, self.hidden:]))
        tensor_of_row = torch.repeat_interleave(torch.arange(len(names), device=flat.device),
                                                torch.tensor(counts, device=flat.device))
        cond = self.cond(h)
        out = chunked(lambda a, b: self.body(self.inp(flat[a:b]).add_(cond[tensor_of_row[a:b]]).relu_()),
                      flat.shape[0], flat.device)
        new_state = {n: torch.cat([h[i], c[i]]) for i, n in enumerate(names)}
        return split_outputs(out, shapes), new_state
