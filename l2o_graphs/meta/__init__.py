"""Meta-training of update networks on task suites: unrolled inner training (truncated backprop
or evolution strategies with PES), the meta-losses, auxiliary weight-space tasks, validation,
checkpoints and distributed runs (``torchrun``); the MetaSGD baseline's meta-training."""
from l2o_graphs.meta.config import MetaConfig
from l2o_graphs.meta.trainer import MetaTrainer, meta_train, torchrun_process_group
from l2o_graphs.meta.unroll import Trajectory, unroll

__all__ = ["MetaConfig", "MetaTrainer", "meta_train", "torchrun_process_group", "Trajectory", "unroll"]
