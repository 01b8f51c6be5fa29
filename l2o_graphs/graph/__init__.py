"""Neural graphs: networks as graphs of neurons (nodes) and weights (edges)."""
from l2o_graphs.graph.neural_graph import (
    EDGE_KINDS, NODE_ROLES, SLOT_KINDS, EdgePlacement, EdgeSegment, GraphBatch, NeuralGraph, NodePlacement)
from l2o_graphs.graph.wiring import ACTIVATION_NAMES, ACTIVATIONS, NeuralGraphWarning, block_graph, unwrap_module

__all__ = ["NeuralGraph", "GraphBatch", "NeuralGraphWarning", "EdgePlacement", "EdgeSegment", "NodePlacement",
           "ACTIVATIONS", "ACTIVATION_NAMES", "EDGE_KINDS", "NODE_ROLES", "SLOT_KINDS", "unwrap_module", "block_graph"]
