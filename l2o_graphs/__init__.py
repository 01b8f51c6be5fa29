"""l2o_graphs: learned optimizers that see the network they train as a neural graph."""
from l2o_graphs.data import load_images
from l2o_graphs.graph import GraphBatch, NeuralGraph, NeuralGraphWarning
from l2o_graphs.optim import NeuralGraphOptimizer

__version__ = "0.1.0"
__all__ = ["NeuralGraph", "GraphBatch", "NeuralGraphWarning", "NeuralGraphOptimizer", "load_images", "__version__"]
