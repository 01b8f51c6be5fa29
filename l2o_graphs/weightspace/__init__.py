"""Weight-space learning: models that read networks' parameters (as neural graphs, or flat, or as
statistics), shared by the INR tasks and generalization prediction."""
from l2o_graphs.weightspace.encoder import ENCODERS, NeuralGraphEncoder, SameArchitecture, mixed_inputs, per_graph_mean
from l2o_graphs.weightspace.models import FlatMLP, GraphPredictor, ParamNormalizer, StatNN, tensor_statistics
from l2o_graphs.weightspace.training import fit_classifier, fit_regressor

__all__ = ["ENCODERS", "NeuralGraphEncoder", "SameArchitecture", "mixed_inputs", "per_graph_mean", "FlatMLP",
           "GraphPredictor", "ParamNormalizer", "StatNN", "tensor_statistics", "fit_classifier", "fit_regressor"]
