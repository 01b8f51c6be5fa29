"""The MetaSGD baseline (learn2learn) meta-trains per-parameter rates that beat its start."""
import pytest
import torch

from l2o_graphs.meta.metasgd import meta_train_metasgd
from l2o_graphs.optim import MetaSGDOptimizer
from l2o_graphs.tasks import mlp
from l2o_graphs.tasks.task import TaskSpec
from l2o_graphs.tasks.train import train_with

SPEC = TaskSpec({"kind": "mlp", "hidden": [16], "activation": "relu"}, "digits", 64, 0)


def test_meta_trained_rates_beat_the_initial_rate():
    lrs = meta_train_metasgd(SPEC, ["digits"], outer_steps=30, unroll=5, trajectory_length=(20, 50), init_lr=0.01,
                             outer_lr=0.01)
    assert [r.shape for r in lrs] == [p.shape for p in mlp([64, 16, 10]).parameters()]
    learned = train_with(SPEC, lambda m: MetaSGDOptimizer(m.parameters(), lrs), 100, seed=1)["train_loss"]
    start = train_with(SPEC, lambda m: torch.optim.SGD(m.parameters(), lr=0.01), 100, seed=1)["train_loss"]
    assert learned < 0.7 * start


def test_rates_of_another_architecture_are_refused():
    with pytest.raises(ValueError, match="one architecture"):
        MetaSGDOptimizer(mlp([64, 8, 10]).parameters(), [torch.ones(16, 64)])
