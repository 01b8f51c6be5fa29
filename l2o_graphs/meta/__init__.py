"""Meta-training of update networks with truncated backprop through unrolled inner training."""
from l2o_graphs.meta.config import MetaConfig
from l2o_graphs.meta.trainer import MetaTrainer, meta_train, torchrun_process_group
from l2o_graphs.meta.unroll import Trajectory, unroll

__all__ = ["MetaConfig", "MetaTrainer", "meta_train", "torchrun_process_group", "Trajectory", "unroll"]
