"""Learned-update networks: NG-GNN and NG-T on the neural graph, FF and LSTM baselines, behind
one interface (:class:`UpdateNet`: features in the network's own layout, outputs per parameter
element); and the pieces graph networks share: message passing over a segmented graph
(``message_passing``), node embeddings (``base``), invariant readouts (``readout``) and NG-GNN's
fused Triton kernels (``edge_kernels``)."""
from typing import Callable, Dict

from l2o_graphs.nn.base import KERNELS, FlatFeatures, GraphFeatures, UpdateNet
from l2o_graphs.nn.baselines import PerParameterMLP, PerTensorLSTM
from l2o_graphs.nn.graph_nets import NGGNN, NGT, GraphUpdateNet
from l2o_graphs.nn.message_passing import SegmentedGraph

NETS: Dict[str, Callable[..., UpdateNet]] = {"ng-gnn": NGGNN, "ng-t": NGT, "ff": PerParameterMLP,
                                             "lstm": PerTensorLSTM}


def build_net(name: str, **config: object) -> UpdateNet:
    """A freshly initialised network ``name`` (one of :data:`NETS`) with ``config`` overrides."""
    if name not in NETS:
        raise ValueError(f"unknown net {name!r}; choose one of {', '.join(NETS)}")
    step_scale = config.pop("step_scale", 1.0)  # every net's: see UpdateNet.step_scale
    if isinstance(step_scale, bool) or not isinstance(step_scale, (int, float)) or \
            not 0 < step_scale < float("inf"):
        raise ValueError(f"bad config for net {name!r}: step_scale must be a positive finite number, got {step_scale!r}")
    try:
        net = NETS[name](**config)
    except TypeError as err:
        raise ValueError(f"bad config for net {name!r}: {err}") from err
    if step_scale != 1.0:
        net.config["step_scale"] = float(step_scale)
    return net


__all__ = ["KERNELS", "UpdateNet", "FlatFeatures", "GraphFeatures", "GraphUpdateNet", "NGGNN", "NGT", "SegmentedGraph", "PerParameterMLP", "PerTensorLSTM", "NETS", "build_net"]
