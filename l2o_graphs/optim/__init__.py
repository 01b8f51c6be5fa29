"""Learned optimizers as ``torch.optim.Optimizer``s: ``NeuralGraphOptimizer`` over the pure
update function ``learned_update``, and the MetaSGD baseline's optimizer; weights files."""
from l2o_graphs.optim.metasgd import MetaSGDOptimizer
from l2o_graphs.optim.neural_graph_optimizer import NeuralGraphOptimizer
from l2o_graphs.optim.update import OptState, init_state, learned_update
from l2o_graphs.optim.weights import load_weights, save_weights

__all__ = ["NeuralGraphOptimizer", "MetaSGDOptimizer", "OptState", "init_state", "learned_update", "save_weights", "load_weights"]
