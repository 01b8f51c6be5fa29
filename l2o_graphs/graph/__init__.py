"""Neural graphs: networks as graphs of neurons (nodes) and weights (edges)."""
from l2o_graphs.graph.layout import (
    ACTIVATION_NAMES, ACTIVATIONS, EDGE_KINDS, NODE_ROLES, SLOT_KINDS, EdgePlacement, EdgeSegment, NodePlacement)
from l2o_graphs.graph.neural_graph import GraphBatch, NeuralGraph, block_graph
from l2o_graphs.graph.wiring import NeuralGraphWarning, unwrap_module

__all__ = ["NeuralGraph", "GraphBatch", "NeuralGraphWarning", "EdgePlacement", "EdgeSegment", "NodePlacement",
           "ACTIVATIONS", "ACTIVATION_NAMES", "EDGE_KINDS", "NODE_ROLES", "SLOT_KINDS", "unwrap_module", "block_graph"]
