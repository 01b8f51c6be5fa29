"""Evolution strategies' particles unrolled together: one update-network forward per inner step
for all of them.

The particles of a PES step are optimizees trained by the same update network with different
perturbations of its meta-parameters. When the meta-parameters are the network's output layers
only (``meta_parameters: [edge_dec_out, node_dec_out]``), everything before those layers is
shared: the particles' neural graphs are joined into one disjoint graph
(:meth:`~l2o_graphs.graph.GraphBatch.union`), the trunk runs once over it, and each particle's
part is decoded by its own output layers at its own step (:class:`~l2o_graphs.nn.graph_nets.Members`).
The results equal one unroll per particle up to float rounding (sums taken in another order).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from l2o_graphs import features as feats
from l2o_graphs.graph import GraphBatch, NeuralGraph
from l2o_graphs.meta.unroll import DIVERGED, Trajectory, begin, finish
from l2o_graphs.nn import GraphUpdateNet, UpdateNet
from l2o_graphs.nn.base import FeatureInputs, GraphFeatures
from l2o_graphs.nn.graph_nets import Members
from l2o_graphs.optim.update import OptState, learned_update
from l2o_graphs.types import TensorDict
from l2o_graphs.tasks.task import Task

OUTPUT_LAYERS = ("edge_dec_out", "node_dec_out")


def output_layer_names(net: nn.Module, meta_params: Sequence[Tensor]) -> Optional[List[str]]:
    """The names of ``meta_params`` in ``net`` when ``net`` is a graph net and they all belong to
    its output layers (then particles can share the trunk); None otherwise."""
    if not isinstance(net, GraphUpdateNet):
        return None
    names = [n for p in meta_params for n, q in net.named_parameters() if p is q]
    if len(names) != len(meta_params) or not all(n.split(".")[0] in OUTPUT_LAYERS for n in names):
        return None
    return names


def output_layers(net: GraphUpdateNet, names: Sequence[str], flats: Tensor) -> Dict[str, Tuple[Tensor, Tensor]]:
    """Each particle's output layers from its flat meta-parameters ``flats [M, P]`` (``names``'s
    tensors concatenated, as :func:`~l2o_graphs.meta.pes.flat_parameters` lays them out): a layer
    left out of ``names`` is the net's own for every particle. Returns ``{"edge_out": (weight [M,
    2, edge_dim], bias [M, 2]), "node_out": (weight [M, 2, hidden], bias [M, 2])}``."""
    own = dict(net.named_parameters())
    sizes = [own[n].numel() for n in names]
    if flats.shape[1] != sum(sizes):
        raise ValueError(f"particles' meta-parameters have {flats.shape[1]} entries; {list(names)} hold {sum(sizes)}")
    given = {n: part.reshape(len(flats), *own[n].shape) for n, part in zip(names, flats.split(sizes, 1))}
    pick = lambda n: given.get(n, own[n].detach().expand(len(flats), *own[n].shape))  # noqa: E731
    return {"edge_out": (pick("edge_dec_out.weight"), pick("edge_dec_out.bias")),
            "node_out": (pick("node_dec_out.weight"), pick("node_dec_out.bias"))}


class ParticleNet(UpdateNet):
    """``net`` over a union graph of particles (:class:`Members`): each at its own step, each
    decoded by its own output layers. The ``time`` it is called with is not read."""

    uses_graph = True

    def __init__(self, net: GraphUpdateNet, members: Members):
        super().__init__(**net.config)
        self.net = net
        self.members = members

    def build_features(self, graph: Optional[NeuralGraph], inputs: Mapping[str, FeatureInputs], dtype: torch.dtype,
                       workspace: Optional[TensorDict] = None) -> GraphFeatures:
        """The wrapped network's layout (see :meth:`~l2o_graphs.nn.UpdateNet.build_features`)."""
        return self.net.build_features(graph, inputs, dtype, workspace)

    def forward(self, features, time: Tensor, graph: Optional[NeuralGraph],
                net_state: Dict[str, Tensor], kernels: str = "torch") -> Tuple[TensorDict, TensorDict]:
        return self.net(features, time, graph, net_state, members=self.members, kernels=kernels)


def particle_graph(graphs: Sequence[NeuralGraph]) -> Tuple[NeuralGraph, Tuple[int, ...], Tuple[int, ...]]:
    """The particles' graphs as one (member ``i``'s parameters named ``f"{i}.{name}"``), and the
    node and edge offsets of the members."""
    batch = GraphBatch(graphs)
    return batch.union().precompute(), tuple(batch.node_ptr.tolist()), tuple(batch.edge_ptr.tolist())


def unroll_particles(net: GraphUpdateNet, runs: Sequence[Tuple[Task, Trajectory]], union: Tuple[NeuralGraph, Tuple[int, ...], Tuple[int, ...]],
                     layers: Dict[str, Tuple[Tensor, Tensor]], steps: int, *, lam: float = 0.01,
                     diverged: float = DIVERGED, workspace: Optional[TensorDict] = None) -> List[Tensor]:
    """Advance every trajectory of ``runs`` by ``steps`` learned updates (in place), the updates
    of an inner step as one :func:`~l2o_graphs.optim.update.learned_update` over ``union`` (from
    :func:`particle_graph` of the runs' graphs, in order) with member ``i`` decoded by
    ``layers``'s row ``i`` (from :func:`output_layers`). Forward only, like
    :func:`~l2o_graphs.meta.unroll.unroll` without ``differentiable``; returns each run's
    ``[steps]`` log loss ratios, as that does with ``per_step``."""
    graph, node_ptr, edge_ptr = union
    if len(node_ptr) != len(runs) + 1:
        raise ValueError(f"the union graph holds {len(node_ptr) - 1} members for {len(runs)} runs")
    started = [begin(traj, task, net) for task, traj in runs]
    params = [p for p, _ in started]
    losses = [loss for _, loss in started]
    states = [traj.state for _, traj in runs]
    terms: List[List[Tensor]] = [[] for _ in runs]
    for _ in range(steps):
        merged_params, merged_grads = {}, {}
        for i, (member, loss) in enumerate(zip(params, losses)):
            grads = torch.autograd.grad(loss, list(member.values()), allow_unused=True)
            for (name, p), g in zip(member.items(), grads):
                merged_params[f"{i}.{name}"], merged_grads[f"{i}.{name}"] = p.detach(), g
        members = Members(node_ptr, edge_ptr, torch.stack([feats.time_features(s.step + 1, device=graph.device) for s in states]),
                          layers["edge_out"], layers["node_out"])
        with torch.no_grad():
            new, merged = learned_update(ParticleNet(net, members), graph, merged_params, merged_grads,
                                         _merge(states), lam=lam, workspace=workspace)
        states = _split(merged, states)
        for i, ((task, traj), member) in enumerate(zip(runs, params)):
            params[i] = {n: new.get(f"{i}.{n}", p).detach().requires_grad_() for n, p in member.items()}
            losses[i] = task.loss(params[i], traj.buffers, *task.batch(traj.batches))
            terms[i].append(losses[i].detach())
    return [finish(traj, member, state, run_terms, diverged)
            for (_, traj), member, state, run_terms in zip(runs, params, states, terms)]


def _merge(states: Sequence[OptState]) -> OptState:
    """The members' states as one, names prefixed with the member's index (``step`` unused:
    every member's time comes with :class:`Members`)."""
    def join(field: str) -> dict:
        return {f"{i}.{n}": v for i, s in enumerate(states) for n, v in getattr(s, field).items()}
    return OptState(join("momenta"), join("second_moment"), join("net_state"), join("updates"), join("skipped"), 0)


def _split(merged: OptState, old: Sequence[OptState]) -> List[OptState]:
    """Inverse of :func:`_merge` after an update: each member's state, its step advanced."""
    out = []
    for i, state in enumerate(old):
        def part(field: str) -> dict:
            return {n: getattr(merged, field)[f"{i}.{n}"] for n in getattr(state, field)}
        out.append(OptState(part("momenta"), part("second_moment"), part("net_state"), part("updates"),
                            part("skipped"), state.step + 1))
    return out
