"""The main job's comparison runs on the shipped weights (a few steps only: a smoke test)."""

from l2o_graphs import NeuralGraphOptimizer
from l2o_graphs.demo import compare_with_adam
from l2o_graphs.optim.weights import PRETRAINED_DIR
from l2o_graphs.tasks import mlp


def test_shipped_weights_are_the_default():
    assert (PRETRAINED_DIR / "ng-gnn.pt").is_file(), "the package ships NG-GNN weights"
    assert (PRETRAINED_DIR / "ng-gnn.pt").stat().st_size < 2 * 1024 * 1024
    opt = NeuralGraphOptimizer(mlp([4, 3, 2]))
    assert type(opt.net).__name__ == "NGGNN"


def test_demo_compares_the_shipped_optimizer_with_adam(tmp_path):
    results = compare_with_adam(tmp_path, steps=3, tasks=("mlp-784-128-128-10-mnist",))
    (task, by_opt), = results.items()
    assert set(by_opt) == {"NG-GNN (shipped)", "Adam lr=0.001"}
    assert all(0 <= r["test_acc"] <= 1 and r["train_loss"] > 0 for r in by_opt.values())
    assert (tmp_path / "demo_curves.png").stat().st_size > 10_000
