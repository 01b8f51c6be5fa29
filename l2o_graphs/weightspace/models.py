"""Models that read a network's parameters: the invariant graph predictor and the two baselines
of the paper (an MLP on the flattened weights and StatNN on per-tensor statistics).

All take a batch of parameter sets of one architecture, ``{name: [B, *shape]}``, and return
``[B, out_dim]``. Each tensor is first standardised with statistics taken from the training set
(:class:`ParamNormalizer`: one mean and standard deviation per parameter name, or per element
for models that need not be invariant): SIREN layers differ in scale by orders of magnitude.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.nn.base import feed_forward
from l2o_graphs.nn.readout import InvariantReadout
from l2o_graphs.weightspace.encoder import NeuralGraphEncoder, SameArchitecture


NORMALIZATIONS = ("tensor", "element")
"""How :class:`ParamNormalizer` standardises: ``tensor``, one mean and standard deviation per
parameter tensor (invariant to permutations of hidden neurons: what graph encoders need; the
neural-graphs repository's per-layer scalars); ``element``, one per parameter element
(DWSNets' ``compute_statistics.py``: each position standardised on its own, not invariant)."""


class ParamNormalizer(nn.Module):
    """``(p - mean[name]) / std[name]`` per parameter tensor, the statistics either scalars or of
    the tensor's shape (:data:`NORMALIZATIONS`)."""

    def __init__(self, names: Sequence[str], mean: Sequence[Tensor], std: Sequence[Tensor]):
        super().__init__()
        self.names = list(names)
        for i, (m, s) in enumerate(zip(mean, std)):
            self.register_buffer(f"mean_{i}", m.float())
            self.register_buffer(f"std_{i}", s.float().clamp_min(1e-8))

    def std(self, name: str) -> Tensor:
        """The standard deviation tensor ``name`` is divided by (a scalar, or of its shape)."""
        return getattr(self, f"std_{self.names.index(name)}")

    @property
    def per_element(self) -> bool:
        """Whether the statistics are per element (not invariant to neuron permutations)."""
        return any(getattr(self, f"mean_{i}").dim() > 0 for i in range(len(self.names)))

    @classmethod
    def fit(cls, params: Mapping[str, Tensor], by: str = "tensor") -> "ParamNormalizer":
        """Statistics of ``params`` ``{name: [n, *shape]}`` (fit them on the training split only):
        over all elements and all networks (``by="tensor"``) or over the networks, element by
        element (``by="element"``)."""
        if by not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {by!r}; choose one of {', '.join(NORMALIZATIONS)}")
        names = list(params)
        values = [params[n].float() for n in names]
        if by == "tensor":
            return cls(names, [v.mean() for v in values], [v.std() for v in values])
        return cls(names, [v.mean(0) for v in values], [v.std(0) for v in values])

    def forward(self, params: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        return {n: (params[n] - getattr(self, f"mean_{i}")) / getattr(self, f"std_{i}")
                for i, n in enumerate(self.names)}


class GraphPredictor(nn.Module):
    """NG-GNN / NG-T encoder, then an MLP on the per-network mean of the output neurons' states
    and the mean of all neurons' states: invariant to permutations of hidden neurons.

    ``probe``: optional module from the (raw) parameters ``{name: [B, ...]}`` to per-node
    features ``[B, N, P]`` in node order (e.g. :class:`~l2o_graphs.inr.siren.SirenProbe`), added
    to the encoder's node inputs."""

    def __init__(self, graph: NeuralGraph, normalizer: ParamNormalizer, out_dim: int, net: str = "ng-gnn",
                 hidden: int = 128, probe: Optional[nn.Module] = None, probe_dim: int = 0, **encoder: object):
        super().__init__()
        self.normalizer = normalizer
        self.inputs = SameArchitecture(graph)
        self.probe = probe
        self.encoder = NeuralGraphEncoder(net, slots=graph.num_slots, kernel_shape=graph.kernel_shape,
                                          node_extra=probe_dim if probe is not None else 0, **encoder)
        self.head = InvariantReadout(self.encoder.node_dim, hidden, out_dim)

    def forward(self, params: Mapping[str, Tensor]) -> Tensor:
        batch, node_x, edge_x = self.inputs.inputs(self.normalizer(params))
        extra = None if self.probe is None else self.probe(params).reshape(node_x.shape[0], -1)
        h, _ = self.encoder(batch, node_x, edge_x, extra)
        return self.head(h, batch.node_role, batch)


class FlatMLP(nn.Module):
    """An MLP on all parameters flattened into one vector (not permutation invariant)."""

    def __init__(self, normalizer: ParamNormalizer, shapes: Mapping[str, torch.Size], out_dim: int,
                 hidden: int = 256, layers: int = 3):
        super().__init__()
        self.normalizer = normalizer
        self.net = feed_forward(sum(int(torch.Size(s).numel()) for s in shapes.values()), hidden, out_dim, layers)

    def forward(self, params: Mapping[str, Tensor]) -> Tensor:
        normed = self.normalizer(params)
        return self.net(torch.cat([normed[n].flatten(1) for n in self.normalizer.names], 1))


STATISTICS = ("mean", "var", "q0", "q25", "q50", "q75", "q100")


def tensor_statistics(params: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """``[B, len(names) * 7]``: mean, variance and the 0/25/50/75/100 % quantiles of every
    parameter tensor of every network (invariant to permutations of hidden neurons)."""
    quantiles = None
    out = []
    for n in names:
        flat = params[n].flatten(1).float()
        if quantiles is None:
            quantiles = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], device=flat.device)
        out += [flat.mean(1, keepdim=True), flat.var(1, keepdim=True, unbiased=False),
                torch.quantile(flat, quantiles, dim=1).t()]
    return torch.cat(out, 1)


class StatNN(nn.Module):
    """StatNN (Unterthiner et al., 2020): an MLP on per-tensor weight and bias statistics."""

    def __init__(self, names: Sequence[str], stats_mean: Tensor, stats_std: Tensor, out_dim: int,
                 hidden: int = 256, layers: int = 3):
        super().__init__()
        self.names = list(names)
        self.register_buffer("stats_mean", stats_mean)
        self.register_buffer("stats_std", stats_std.clamp_min(1e-8))
        self.net = feed_forward(len(self.names) * len(STATISTICS), hidden, out_dim, layers)

    @classmethod
    def fit(cls, params: Mapping[str, Tensor], out_dim: int, **kwargs: object) -> "StatNN":
        """Standardise the statistics with their mean and std over the training networks."""
        names = list(params)
        stats = tensor_statistics(params, names)
        return cls(names, stats.mean(0), stats.std(0), out_dim, **kwargs)

    def forward(self, params: Mapping[str, Tensor]) -> Tensor:
        return self.net((tensor_statistics(params, self.names) - self.stats_mean) / self.stats_std)
