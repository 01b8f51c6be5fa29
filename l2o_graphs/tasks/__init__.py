"""Optimizee tasks and their architectures."""
from l2o_graphs.tasks.architectures import (
    ARCHITECTURES, ResidualBlock, ResidualCNN, build_architecture, cnn_flatten, mlp, paper_cnn)

__all__ = ["ARCHITECTURES", "build_architecture", "mlp", "paper_cnn", "cnn_flatten", "ResidualCNN", "ResidualBlock"]
