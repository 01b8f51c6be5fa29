"""Auxiliary weight-space tasks for meta-training: losses on the update network's own trunk.

The learned optimizer's graph layers (NG-GNN or NG-T) read every optimizee as a neural graph; an
auxiliary task makes the same layers also read *trained* networks and predict something about
them, through a small head of its own (shared trunk, task-specific heads, weighted sum of losses):

* ``inr-classification``: the class of the image a SIREN encodes (an INR set made by
  ``l2o-graphs inr make``; weights are readable on sets made with ``--protocol dwsnets``, not on
  the default protocol's, where every weight-only classifier stays near chance), cross-entropy;
* ``generalization``: a zoo CNN's test accuracy (a zoo made by ``l2o-graphs zoo make``), squared
  error of a sigmoid output.

A network enters the trunk as the optimizer would see it before its first step
(:meth:`~l2o_graphs.nn.GraphUpdateNet.embed`); the head reads the mean state of its output
neurons and of all its neurons, so the prediction is invariant to permutations of hidden neurons.

Configured in the meta-training YAML as a mapping from task name to its settings::

    auxiliary:
      inr-classification: {weight: 0.1, batch: 8, folder: /path/to/dwsnets-protocol/set}
      generalization: {weight: 0.1, batch: 8, folder: /path/to/zoo}
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.nn import GraphUpdateNet
from l2o_graphs.nn.readout import InvariantReadout
from l2o_graphs.weightspace.models import ParamNormalizer

AUXILIARY_TASKS = ("inr-classification", "generalization")
SETTINGS = {"weight": (int, float), "batch": int, "folder": (str, type(None)), "hidden": int}
DEFAULTS = {"weight": 0.1, "batch": 8, "folder": None, "hidden": 64}


def check_auxiliary(auxiliary: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Validate the ``auxiliary`` config mapping; returns it with defaults filled in and the tasks
    in :data:`AUXILIARY_TASKS` order (the order they draw their batches in, so that a config's key
    order, which YAML writers may sort, does not change a run).

    Raises ``ValueError`` naming the first unknown task, unknown setting or bad value."""
    if not isinstance(auxiliary, Mapping):
        raise ValueError(f"auxiliary: a mapping from task ({', '.join(AUXILIARY_TASKS)}) to settings, "
                         f"got {auxiliary!r}")
    out = {}
    for name, settings in auxiliary.items():
        if name not in AUXILIARY_TASKS:
            raise ValueError(f"auxiliary: unknown task {name!r}; choose from {', '.join(AUXILIARY_TASKS)}")
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise ValueError(f"auxiliary.{name}: unknown setting {unknown[0]!r} (known: {', '.join(SETTINGS)})")
        full = {**DEFAULTS, **settings}
        for key, kind in SETTINGS.items():
            value = full[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"auxiliary.{name}.{key}: bad value {value!r}")
            if key != "folder" and not value > 0:
                raise ValueError(f"auxiliary.{name}.{key}: must be positive, got {value!r}")
        out[name] = full
    return {name: out[name] for name in AUXILIARY_TASKS if name in out}


class AuxiliaryTask(nn.Module, abc.ABC):
    """A head on the update network's trunk and a loss on a random batch of networks.

    Subclasses hold their training networks and define :meth:`loss`."""

    def __init__(self, node_dim: int, out_dim: int, weight: float, batch: int, hidden: int):
        super().__init__()
        self.weight, self.batch = float(weight), int(batch)
        self.head = InvariantReadout(node_dim, hidden, out_dim)

    def readout(self, net: GraphUpdateNet, params: Mapping[str, Tensor], graph: NeuralGraph,
                standardize: Optional[nn.Module] = None) -> Tensor:
        """``[out_dim]``: the head on the mean trunk state of the output neurons and of all neurons
        (``standardize``: see :meth:`~l2o_graphs.nn.GraphUpdateNet.embed`)."""
        h, _ = net.embed(params, graph, standardize)
        return self.head(h, graph.node_role)

    @abc.abstractmethod
    def loss(self, net: GraphUpdateNet, generator: torch.Generator) -> Tensor:
        """The task's loss on ``batch`` networks drawn with ``generator`` (unweighted)."""


class InrClassificationTask(AuxiliaryTask):
    """Cross-entropy of the class of the image each SIREN of the train split encodes.

    The trunk reads each SIREN's parameters standardised by the train split's mean and standard
    deviation of each tensor (scalars: invariant to permutations of hidden neurons), not by the
    SIREN's own RMS, which would scale away how large its tensors are against the other SIRENs'.
    """

    def __init__(self, net: GraphUpdateNet, folder: Path, weight: float, batch: int, hidden: int,
                 device: torch.device):
        from l2o_graphs.inr.dataset import load_inr_set
        from l2o_graphs.inr.siren import Siren

        super().__init__(net.config["node_dim"], 10, weight, batch, hidden)
        train = load_inr_set(folder, "train")
        if not len(train.label):
            raise ValueError(f"the INR set in {folder} has no training INRs")
        self.params = {n: p.to(device) for n, p in train.params.items()}
        self.labels = train.label.to(device)
        self.graph = NeuralGraph.from_module(Siren()).to(device).precompute()
        self.standardize = ParamNormalizer.fit(self.params, by="tensor")

    def loss(self, net: GraphUpdateNet, generator: torch.Generator) -> Tensor:
        index = torch.randint(len(self.labels), (self.batch,), generator=generator).tolist()
        logits = torch.stack([self.readout(net, {n: p[i] for n, p in self.params.items()}, self.graph,
                                           self.standardize) for i in index])
        return nn.functional.cross_entropy(logits, self.labels[index])


class GeneralizationTask(AuxiliaryTask):
    """Squared error of the predicted test accuracy of checkpoints of the zoo's train networks."""

    def __init__(self, net: GraphUpdateNet, folder: Path, weight: float, batch: int, hidden: int,
                 device: torch.device):
        from l2o_graphs.zoo.make import load_zoo
        from l2o_graphs.zoo.predict import ArchitectureGraphs

        super().__init__(net.config["node_dim"], 1, weight, batch, hidden)
        entries = load_zoo(folder, "train")
        if not entries:
            raise ValueError(f"the zoo in {folder} has no training networks")
        self.graphs = ArchitectureGraphs(device)
        self.entries: List[Tuple[NeuralGraph, Dict[str, Tensor], float]] = [
            (self.graphs(e.architecture), {n: p.to(device) for n, p in e.params.items()}, e.test_acc) for e in entries]

    def loss(self, net: GraphUpdateNet, generator: torch.Generator) -> Tensor:
        index = torch.randint(len(self.entries), (self.batch,), generator=generator).tolist()
        chosen = [self.entries[i] for i in index]
        predicted = torch.sigmoid(torch.cat([self.readout(net, params, graph) for graph, params, _ in chosen]))
        target = predicted.new_tensor([acc for _, _, acc in chosen])
        return (predicted - target).square().mean()


def _default_folder(name: str) -> Path:
    from l2o_graphs.inr.dataset import default_folder
    from l2o_graphs.zoo.make import default_zoo_folder

    return default_folder("mnist") if name == "inr-classification" else default_zoo_folder()


def build_auxiliary(auxiliary: Mapping[str, Any], net: nn.Module, device: torch.device) -> nn.ModuleDict:
    """The auxiliary tasks of a (validated) ``auxiliary`` config for ``net``, heads on ``device``.

    Raises ``ValueError`` when ``net`` has no graph trunk, ``FileNotFoundError`` (saying which
    command makes it) when a task's data is missing."""
    tasks = nn.ModuleDict()
    if not auxiliary:
        return tasks
    if not isinstance(net, GraphUpdateNet):
        raise ValueError(f"auxiliary tasks need a graph update network (ng-gnn, ng-t), not {type(net).__name__}")
    kinds = {"inr-classification": InrClassificationTask, "generalization": GeneralizationTask}
    for name, s in check_auxiliary(auxiliary).items():
        folder = Path(s["folder"]).expanduser() if s["folder"] else _default_folder(name)
        tasks[name] = kinds[name](net, folder, s["weight"], s["batch"], s["hidden"], device).to(device)
    return tasks


def auxiliary_losses(tasks: nn.ModuleDict, net: GraphUpdateNet,
                     generator: torch.Generator) -> Tuple[Optional[Tensor], Dict[str, float]]:
    """The weighted sum of every task's loss (None without tasks) and each unweighted loss."""
    total, each = None, {}
    for name, task in tasks.items():
        loss = task.loss(net, generator)
        each[name] = float(loss.detach())
        total = task.weight * loss if total is None else total + task.weight * loss
    return total, each


__all__ = ["AUXILIARY_TASKS", "AuxiliaryTask", "InrClassificationTask", "GeneralizationTask", "check_auxiliary",
           "build_auxiliary", "auxiliary_losses"]
