"""Meta-training: exact meta-gradients, learning on a tiny suite, resume, suites in YAML."""
import copy
import json

import pytest
import torch
import yaml

from l2o_graphs.meta import MetaConfig, MetaTrainer
from l2o_graphs.meta.unroll import Trajectory, unroll
from l2o_graphs.nn import build_net
from l2o_graphs.graph import NeuralGraph
from l2o_graphs.tasks.suites import SuiteError, load_suite, parse_suite
from l2o_graphs.tasks.task import Task, TaskSpec

TINY = TaskSpec({"kind": "mlp", "hidden": [8], "activation": "tanh"}, "digits", 32, seed=3)


def _meta_loss(net, second_order, steps=3):
    task = Task(TINY, dtype=next(net.parameters()).dtype)
    traj = Trajectory(TINY, length=100)
    graph = NeuralGraph.from_module(task.module) if net.uses_graph else None
    return unroll(net, task, graph, traj, steps, second_order=second_order)


@pytest.mark.parametrize("net_name", ["ng-gnn", "ff"])
def test_second_order_meta_gradient_matches_finite_differences(net_name):
    torch.manual_seed(0)
    net = build_net(net_name).double()
    loss = _meta_loss(net, second_order=True)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    direction = [torch.randn_like(p) for p in net.parameters()]
    analytic = sum((g * d).sum() for g, d in zip(grads, direction))
    eps = 1e-6
    with torch.no_grad():
        for p, d in zip(net.parameters(), direction):
            p.add_(eps * d)
    plus = _meta_loss(net, second_order=True)
    with torch.no_grad():
        for p, d in zip(net.parameters(), direction):
            p.sub_(2 * eps * d)
    minus = _meta_loss(net, second_order=True)
    numeric = (plus - minus).detach() / (2 * eps)
    assert abs(float(analytic)) > 1e-6  # the check is not vacuous
    assert float(analytic) == pytest.approx(float(numeric), rel=1e-4)


def test_first_order_drops_the_terms_through_the_gradients():
    torch.manual_seed(0)
    net = build_net("ff")
    first = torch.autograd.grad(_meta_loss(net, second_order=False), list(net.parameters()))
    second = torch.autograd.grad(_meta_loss(net, second_order=True), list(net.parameters()))
    diff = max(float((a - b).abs().max()) for a, b in zip(first, second))
    scale = max(float(b.abs().max()) for b in second)
    assert 0 < diff < scale  # different, but the same gradient in the large


def _config(tmp_path, **overrides):
    base = dict(net="ng-gnn", suite="digits-mlp", outer_steps=6, meta_batch=2, unroll=4,
                trajectory_length=(8, 12), warmup=2, lr=3e-3, checkpoint_every=3, device="cpu")
    return MetaConfig(**{**base, **overrides})


def _final_loss(net, spec, steps=40):
    task = Task(spec)
    traj = Trajectory(spec, length=steps)
    graph = NeuralGraph.from_module(task.module)
    for _ in range(steps // 10):
        unroll(net, task, graph, traj, 10)
    return task.evaluate(traj.params, traj.buffers, split="train")[0]


@pytest.mark.slow
def test_short_meta_training_makes_a_better_optimizer(tmp_path):
    cfg = _config(tmp_path, outer_steps=40, trajectory_length=(50, 100), unroll=5, warmup=5, checkpoint_every=40)
    trainer = MetaTrainer(cfg, tmp_path / "run")
    held_out = TaskSpec({"kind": "mlp", "hidden": [16], "activation": "relu"}, "digits", 64, seed=12345)
    before = _final_loss(copy.deepcopy(trainer.net), held_out)
    trainer.run(progress=False)
    after = _final_loss(trainer.net, held_out)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 40 and (tmp_path / "run" / "weights.pt").is_file()
    assert after < 0.7 * before, (before, after)


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_same_meta_parameters(tmp_path):
    cfg = _config(tmp_path)
    straight = MetaTrainer(cfg, tmp_path / "a").run(progress=False)
    MetaTrainer(cfg, tmp_path / "b").run(progress=False, stop_after=4)  # "killed" one step after a checkpoint
    resumed = MetaTrainer(cfg, tmp_path / "b", resume=True)
    assert resumed.step == 3
    resumed.run(progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), name
    logged = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged] == [1, 2, 3, 4, 5, 6]  # step 4, logged before the kill, once


@pytest.mark.slow
def test_resume_with_another_config_is_refused(tmp_path):
    MetaTrainer(_config(tmp_path), tmp_path / "run").run(progress=False, stop_after=3)
    with pytest.raises(ValueError, match="differs in lr"):
        MetaTrainer(_config(tmp_path, lr=1e-2), tmp_path / "run", resume=True)


def test_suite_from_yaml_and_malformed_suites(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "mine", "datasets": ["digits"], "batch_sizes": [16],
                                    "architectures": [{"kind": "cnn", "conv_layers": [2, 3], "channels": [4, 8],
                                                       "kernels": [3], "heads": ["pool"], "activations": ["relu"],
                                                       "residual": [True], "batchnorm": [False]}]}))
    suite = load_suite(path)
    spec = suite.sample(torch.Generator().manual_seed(0))
    assert spec.architecture["kind"] == "cnn" and spec.dataset == "digits" and spec.batch_size == 16
    Task(spec).loss(*Task(spec).init_params(), *Task(spec).batch(torch.Generator()))

    good = yaml.safe_load(path.read_text())
    for field, value, match in [("datasets", ["cifar10"], "'datasets'"), ("batch_sizes", [0], "'batch_sizes'"),
                                ("colour", "red", "'colour'")]:
        with pytest.raises(SuiteError, match=match):
            parse_suite({**good, field: value})
    bad_arch = copy.deepcopy(good)
    bad_arch["architectures"][0]["channels"] = [8, 4]
    with pytest.raises(SuiteError, match=r"architectures\[0\].channels"):
        parse_suite(bad_arch)
    del bad_arch["architectures"][0]["channels"]
    with pytest.raises(SuiteError, match=r"architectures\[0\].channels.*missing"):
        parse_suite(bad_arch)
    with pytest.raises(SuiteError, match="no built-in suite"):
        load_suite("no-such-suite")


def test_meta_config_rejects_unknown_and_bad_fields(tmp_path):
    with pytest.raises(ValueError, match="unknown field 'lerning_rate'"):
        MetaConfig.from_dict({"lerning_rate": 1.0})
    with pytest.raises(ValueError, match="'unroll'"):
        MetaConfig(unroll=0)
    with pytest.raises(ValueError, match="'validation_margin'"):
        MetaConfig(validation_margin=-0.05)


def test_fewshot_suite_draws_learn2learn_tasks():
    suite = load_suite("fewshot")
    spec = suite.sample(torch.Generator().manual_seed(1))
    assert spec.fewshot["ways"] == 5 and spec.fewshot["shots"] in (5, 10)
    task = Task(spec)
    ways, shots, queries = spec.fewshot["ways"], spec.fewshot["shots"], spec.fewshot["queries"]
    assert task.train_x.shape[0] == ways * shots and task.test_x.shape[0] == ways * queries
    assert torch.equal(torch.bincount(task.train_y), torch.full((ways,), shots))
    assert torch.equal(torch.bincount(task.test_y), torch.full((ways,), queries))
    again = Task(TaskSpec.from_dict(spec.to_dict()))  # as rebuilt from a checkpoint
    assert torch.equal(again.train_x, task.train_x) and torch.equal(again.test_y, task.test_y)
    # no image is both a training and a held-out one
    train = {bytes(x.numpy().tobytes()) for x in task.train_x}
    assert not any(bytes(x.numpy().tobytes()) in train for x in task.test_x)
    params, buffers = task.init_params()
    assert task.loss(params, buffers, *task.batch(torch.Generator())).isfinite()


def test_meta_training_never_draws_a_heldout_task():
    from l2o_graphs.meta.trainer import _new_trajectory
    from l2o_graphs.tasks.train import HELDOUT_TASKS, is_heldout

    mlp = HELDOUT_TASKS["mlp-784-128-128-10-mnist"]
    suite = parse_suite({"name": "only-heldout-or-digits", "datasets": ["mnist", "digits"], "batch_sizes": [128],
                         "architectures": [{"kind": "mlp", "hidden_layers": [2, 2], "width": [128, 128],
                                            "activations": ["relu"]}]})
    sampler = torch.Generator().manual_seed(0)
    drawn = [_new_trajectory(suite, MetaConfig(), sampler).spec for _ in range(20)]
    assert is_heldout(TaskSpec(mlp.architecture, "mnist", 64, 7))
    assert all(spec.dataset == "digits" for spec in drawn)  # the MNIST draws were the held-out MLP
