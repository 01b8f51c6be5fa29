"""l2o_graphs: learned optimizers that see the network they train as a neural graph."""
from l2o_graphs.graph import GraphBatch, NeuralGraph, NeuralGraphWarning
from l2o_graphs.data import load_images

__version__ = "0.1.0"
__all__ = ["NeuralGraph", "GraphBatch", "NeuralGraphWarning", "load_images", "__version__"]
