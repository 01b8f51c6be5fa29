"""Task augmentation by a parameter scale, and the tiny 8x8 datasets of the meta-training suite."""
import pytest
import torch

from l2o_graphs.data import load_images
from l2o_graphs.tasks.suites import SuiteError, load_suite, parse_suite
from l2o_graphs.tasks.task import Task, TaskSpec

PLAIN = TaskSpec({"kind": "cnn", "channels": [4, 6], "kernel": 3, "head": "flatten", "activation": "tanh",
                  "batchnorm": False, "residual": False}, "digits", 16, seed=5)


@pytest.mark.parametrize("scale", [1e-3, 0.37, 1e3])
def test_augmented_loss_at_scaled_init_equals_plain_loss(scale):
    plain = Task(PLAIN, dtype=torch.float64)
    augmented = Task(TaskSpec(**{**PLAIN.__dict__, "param_scale": scale}), dtype=torch.float64)
    w0, buffers = plain.init_params()
    v0, _ = augmented.init_params()
    for name in w0:
        torch.testing.assert_close(v0[name] * scale, w0[name], rtol=1e-12, atol=0)
    x, y = plain.batch(torch.Generator().manual_seed(0))
    w = {n: p.requires_grad_() for n, p in w0.items()}
    v = {n: p.requires_grad_() for n, p in v0.items()}
    plain_loss, augmented_loss = plain.loss(w, buffers, x, y), augmented.loss(v, buffers, x, y)
    torch.testing.assert_close(augmented_loss, plain_loss, rtol=1e-12, atol=0)
    # the chain rule: the gradient with respect to v is scale times the one with respect to w
    gw = torch.autograd.grad(plain_loss, list(w.values()))
    gv = torch.autograd.grad(augmented_loss, list(v.values()))
    for a, b in zip(gw, gv):
        torch.testing.assert_close(b, scale * a, rtol=1e-10, atol=1e-300)
    assert augmented.evaluate(v, buffers, split="test")[0] == pytest.approx(plain.evaluate(w, buffers, split="test")[0])


def test_param_scale_survives_a_checkpoint_and_bad_scales_are_refused():
    spec = TaskSpec(**{**PLAIN.__dict__, "param_scale": 12.5})
    assert TaskSpec.from_dict(spec.to_dict()) == spec and TaskSpec.from_dict(spec.to_dict()).param_scale == 12.5
    assert "param_scale" not in PLAIN.to_dict()  # plain specs keep the format checkpoints already hold
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="param_scale"):
            TaskSpec(**{**PLAIN.__dict__, "param_scale": bad})


def test_suite_draws_scales_log_uniformly_within_its_range():
    base = {"name": "aug", "datasets": ["digits"], "batch_sizes": [8], "param_scales": [1e-3, 1e3],
            "architectures": [{"kind": "mlp", "hidden_layers": [1, 1], "width": [4, 4], "activations": ["relu"]}]}
    suite = parse_suite(base)
    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([suite.sample(gen).param_scale for _ in range(400)])
    assert bool(((scales >= 1e-3) & (scales <= 1e3)).all())
    logs = scales.log10()
    assert abs(float(logs.mean())) < 0.35 and float((logs < -2).float().mean()) > 0.1  # spread over decades
    for bad in ([0, 1], [2, 1], [1], "big", [1, float("inf")]):
        with pytest.raises(SuiteError, match="param_scales"):
            parse_suite({**base, "param_scales": bad})


@pytest.mark.parametrize("name, source", [("mnist-8x8", "mnist"), ("fashion_mnist-8x8", "fashion_mnist")])
def test_eight_by_eight_sets_are_the_28x28_sets_pooled(name, source):
    small, labels = load_images(name, "test")
    full, full_labels = load_images(source, "test")
    assert small.shape == (10000, 1, 8, 8) and torch.equal(labels, full_labels)
    assert 0 <= float(small.min()) and float(small.max()) <= 1
    # adaptive pooling 28 -> 8: cell i averages rows floor(3.5 i) .. ceil(3.5 (i + 1)) - 1
    torch.testing.assert_close(small[:, 0, 0, 0], full[:, 0, :4, :4].mean((1, 2)))
    torch.testing.assert_close(small[:, 0, 3, 5], full[:, 0, 10:14, 17:21].mean((1, 2)))


def test_tiny_suite_draws_tiny_tasks():
    suite = load_suite("tiny")
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        spec = suite.sample(gen)
        task = Task(spec)
        assert task.train_x.shape[-1] == 8
        assert sum(p.numel() for p in task.module.parameters()) < 10_000
