"""NeuralGraphOptimizer behaves like a torch.optim.Optimizer."""
import copy
import io
import os
import pickle
import tempfile

import pytest
import torch
import torch.distributed as dist
from torch import nn

from l2o_graphs import NeuralGraphOptimizer, NeuralGraphWarning
from l2o_graphs.optim import load_weights, save_weights
from l2o_graphs.nn import build_net
from l2o_graphs.tasks import ResidualCNN, mlp, paper_cnn

NETS = ["ng-gnn", "ng-t", "ff", "lstm"]


class ArbitraryObject:
    """Stands for any pickled object: weights_only loading must refuse it."""


def _batch(seed: int, n: int = 8):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def _model():
    torch.manual_seed(0)
    return paper_cnn()


def _train(model, opt, steps, start=0):
    for i in range(start, start + steps):
        x, y = _batch(i)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def _assert_same(a, b):
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.slow
@pytest.mark.parametrize("net", ["ng-gnn", "lstm"])
def test_resume_equals_uninterrupted_run(net):
    model = _model()
    reference = copy.deepcopy(model)
    ref_opt = NeuralGraphOptimizer(reference, weights=None, net=net)
    _train(reference, ref_opt, 20)

    opt = NeuralGraphOptimizer(model, weights=None, net=net)
    _train(model, opt, 10)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed = paper_cnn()
    resumed.load_state_dict(saved["model"])
    resumed_opt = NeuralGraphOptimizer(resumed, weights=None, net=net, seed=123)  # other weights: overwritten
    resumed_opt.load_state_dict(saved["opt"])
    _train(resumed, resumed_opt, 10, start=10)
    _assert_same(_params(resumed), _params(reference))


def test_state_dict_of_another_net_is_rejected():
    model = _model()
    opt = NeuralGraphOptimizer(model, weights=None, net="ff")
    _train(model, opt, 1)
    other = NeuralGraphOptimizer(_model(), weights=None, net="lstm")
    with pytest.raises(ValueError, match="state dict is for net 'ff'"):
        other.load_state_dict(opt.state_dict())


def test_module_argument_gives_the_same_result_as_passing_the_model():
    a, b = _model(), _model()
    _train(a, NeuralGraphOptimizer(a, weights=None), 3)
    _train(b, NeuralGraphOptimizer(b.parameters(), weights=None, module=b), 3)
    _assert_same(_params(a), _params(b))


def test_parameters_without_module_warn_and_train():
    model = _model()
    with pytest.warns(NeuralGraphWarning, match="without their module"):
        opt = NeuralGraphOptimizer(model.parameters(), weights=None)
    before = _params(model)
    _train(model, opt, 2)
    assert all(not torch.equal(a, b) for a, b in zip(before, _params(model)))
    assert opt.graph.num_params == sum(p.numel() for p in model.parameters())


def test_foreign_parameters_are_rejected():
    with pytest.raises(ValueError, match="do not belong"):
        NeuralGraphOptimizer([nn.Parameter(torch.zeros(3))], weights=None, module=_model())


@pytest.mark.parametrize("kwargs, match", [({"lr": -1.0}, "invalid lr"), ({"weight_decay": -0.1}, "weight_decay"),
                                           ({"lam": 0.0}, "invalid lam"), ({"net": "adam"}, "unknown net")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NeuralGraphOptimizer(_model(), weights=None, **kwargs)


def test_lr_scales_the_step_and_schedulers_drive_it():
    a, b = _model(), _model()
    opt_a = NeuralGraphOptimizer(a, weights=None, lr=1.0)
    opt_b = NeuralGraphOptimizer(b, weights=None, lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(opt_a, step_size=1, gamma=0.5)
    grads = [torch.randn_like(p) for p in a.parameters()]

    def step(model, opt):
        before = _params(model)
        for p, g in zip(model.parameters(), grads):
            p.grad = g.clone()
        opt.step()
        return [after - prev for after, prev in zip(_params(model), before)]

    first_a, first_b = step(a, opt_a), step(b, opt_b)
    _assert_same(first_a, first_b)
    scheduler.step()
    assert opt_a.param_groups[0]["lr"] == 0.5
    second_a, second_b = step(a, opt_a), step(b, opt_b)
    for da, db in zip(second_a, second_b):
        torch.testing.assert_close(da, 0.5 * db, rtol=1e-5, atol=1e-7)


def test_closure_loss_is_returned():
    model = _model()
    opt = NeuralGraphOptimizer(model, weights=None)
    x, y = _batch(0)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    before = _params(model)
    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.item() > 0
    assert not torch.equal(before[0], _params(model)[0])


def test_grad_none_and_frozen_parameters_are_untouched():
    model = _model()
    frozen = model[0].weight
    frozen.requires_grad_(False)
    opt = NeuralGraphOptimizer(model, weights=None)
    x, y = _batch(0)
    nn.functional.cross_entropy(model(x), y).backward()
    model[2].bias.grad = None
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    after = dict(model.named_parameters())
    assert torch.equal(after["0.weight"], before["0.weight"])
    assert torch.equal(after["2.bias"], before["2.bias"])
    assert not torch.equal(after["2.weight"], before["2.weight"])
    assert model[2].bias not in opt.state or "momenta" not in opt.state[model[2].bias]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradient_is_skipped_and_counted(bad):
    def run(poison):
        model = _model()
        opt = NeuralGraphOptimizer(model, weights=None, net="ng-gnn")
        x, y = _batch(0)
        nn.functional.cross_entropy(model(x), y).backward()
        if poison:
            model[2].weight.grad[0, 0, 0, 0] = bad
        else:
            model[2].weight.grad = None
        before = _params(model)
        opt.step()
        return model, opt, before

    model, opt, before = run(poison=True)
    clean, _, _ = run(poison=False)
    assert torch.equal(model[2].weight, before[2])
    assert int(opt.state[model[2].weight]["skipped"]) == 1 and opt.skipped_updates == 1
    for p, q in zip(model.parameters(), clean.parameters()):
        assert bool(torch.isfinite(p).all())
        assert torch.equal(p, q)  # the poisoned tensor entered as zero: neighbours unaffected


def test_grad_scaler_step_with_inf_changes_nothing():
    model = _model()
    opt = NeuralGraphOptimizer(model, weights=None)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    x, y = _batch(0)
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
    model[4].weight.grad[0, 0, 0, 0] = float("inf")
    before = _params(model)
    scaler.step(opt)
    scaler.update()
    _assert_same(before, _params(model))
    assert scaler.get_scale() < 2.0 ** 8
    opt.zero_grad()
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
    scaler.step(opt)
    assert not torch.equal(before[0], _params(model)[0])


def test_bfloat16_parameters_compute_in_float32():
    model = _model().to(torch.bfloat16)
    opt = NeuralGraphOptimizer(model, weights=None)
    for i in range(3):
        x, y = _batch(i)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x.to(torch.bfloat16)), y).backward()
        opt.step()
    for p in model.parameters():
        assert p.dtype == torch.bfloat16 and bool(torch.isfinite(p).all())
        assert opt.state[p]["momenta"].dtype == torch.float32
    fresh = NeuralGraphOptimizer(model, weights=None)
    fresh.load_state_dict(opt.state_dict())
    for p in model.parameters():  # not cast to bfloat16 on load
        assert torch.equal(fresh.state[p]["momenta"], opt.state[p]["momenta"])


def test_step_builds_no_autograd_graph_and_keeps_only_its_state():
    model = _model()
    opt = NeuralGraphOptimizer(model, weights=None, net="lstm")
    _train(model, opt, 2)
    for p in model.parameters():
        assert p.grad_fn is None and p.is_leaf
        assert set(opt.state[p]) == {"momenta", "second_moment", "updates", "skipped", "step", "net_state"}
        assert all(not t.requires_grad for t in opt.state[p].values())


@pytest.mark.parametrize("net", NETS)
def test_weights_file_round_trip(tmp_path, net):
    original = build_net(net)
    save_weights(original, tmp_path / "w.pt", note="test")
    loaded = load_weights(tmp_path / "w.pt")
    assert type(loaded) is type(original)
    for a, b in zip(original.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    model = _model()
    opt = NeuralGraphOptimizer(model, weights=tmp_path / "w.pt", net=net)
    _train(model, opt, 1)


@pytest.mark.parametrize("net", ["ng-gnn", "ng-t"])
def test_weights_saved_before_an_activation_was_added_still_load(tmp_path, net):
    """ACTIVATION_NAMES grows by appending ('sin' came with the INR tasks); an older, shorter
    activation table loads, with zero embeddings for the new names and its own rows unchanged."""
    torch.manual_seed(3)
    original = build_net(net)
    state = original.state_dict()
    table = state["activation.weight"]
    state["activation.weight"] = table[:-1].clone()
    loaded = build_net(net)
    loaded.load_state_dict(state)
    assert torch.equal(loaded.activation.weight[:-1], table[:-1])
    assert not loaded.activation.weight[-1].any()
    state["activation.weight"] = table[:, :-1].clone()  # any other mismatch is still an error
    with pytest.raises(RuntimeError, match="size mismatch"):
        build_net(net).load_state_dict(state)


def test_weights_saved_before_the_sine_activation_load(tmp_path):
    """Weights files written before 'sin' joined ACTIVATION_NAMES hold one row fewer: they load,
    the known rows as saved and a zero row for the new activation."""
    from l2o_graphs.graph import ACTIVATION_NAMES

    save_weights(build_net("ng-gnn"), tmp_path / "now.pt")
    blob = torch.load(tmp_path / "now.pt", weights_only=True)
    blob["state_dict"]["activation.weight"] = blob["state_dict"]["activation.weight"][:-1].clone()
    torch.save(blob, tmp_path / "older.pt")
    assert blob["state_dict"]["activation.weight"].shape[0] == len(ACTIVATION_NAMES) - 1
    net = load_weights(tmp_path / "older.pt", expected_net="ng-gnn")
    assert torch.equal(net.activation.weight[:-1], blob["state_dict"]["activation.weight"])
    assert torch.equal(net.activation.weight[-1], torch.zeros_like(net.activation.weight[-1]))


def test_weights_file_of_the_wrong_kind(tmp_path):
    save_weights(build_net("ff"), tmp_path / "ff.pt")
    with pytest.raises(ValueError, match="holds weights of net 'ff'"):
        NeuralGraphOptimizer(_model(), weights=tmp_path / "ff.pt", net="ng-gnn")
    blob = torch.load(tmp_path / "ff.pt", weights_only=True)
    blob["config"]["hidden"] = 7
    torch.save(blob, tmp_path / "bad_shape.pt")
    with pytest.raises(ValueError, match="do not fit"):
        load_weights(tmp_path / "bad_shape.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an l2o_graphs weights file"):
        load_weights(tmp_path / "other.pt")
    with open(tmp_path / "pickled.pt", "wb") as f:  # arbitrary pickle: refused by weights_only loading
        pickle.dump({"format": "l2o_graphs.update_net", "payload": ArbitraryObject()}, f, protocol=2)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_weights(tmp_path / "pickled.pt")
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.pt")


def test_default_weights_missing_gives_a_clear_error(monkeypatch, tmp_path):
    from l2o_graphs.optim import neural_graph_optimizer as module

    monkeypatch.setattr(module, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="weights=None"):
        NeuralGraphOptimizer(_model())


def test_compiled_model_is_read_through():
    model = _model()
    compiled = torch.compile(model, backend="eager")
    opt = NeuralGraphOptimizer(compiled, weights=None)
    assert opt.graph is NeuralGraphOptimizer(model, weights=None).graph
    before = _params(model)
    _train(compiled, opt, 2)
    assert not torch.equal(before[0], _params(model)[0])


def test_ddp_wrapped_model_is_read_through():
    with tempfile.TemporaryDirectory() as folder:
        dist.init_process_group("gloo", init_method=f"file://{os.path.join(folder, 'store')}", rank=0, world_size=1)
        try:
            model = _model()
            wrapped = nn.parallel.DistributedDataParallel(model)
            opt = NeuralGraphOptimizer(wrapped, weights=None)
            assert opt.graph is NeuralGraphOptimizer(model, weights=None).graph
            before = _params(model)
            _train(wrapped, opt, 2)
            assert not torch.equal(before[0], _params(model)[0])
        finally:
            dist.destroy_process_group()


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("net", NETS)
def test_cuda_step_matches_cpu_step(net):
    torch.manual_seed(0)
    cpu_model = ResidualCNN(channels=4, blocks=1)
    cuda_model = copy.deepcopy(cpu_model).cuda()
    x, y = _batch(0)
    for model, opt, dev in ((cpu_model, NeuralGraphOptimizer(cpu_model, weights=None, net=net), "cpu"),
                            (cuda_model, NeuralGraphOptimizer(cuda_model, weights=None, net=net, autocast=False),
                             "cuda")):
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x.to(dev)), y.to(dev)).backward()
            opt.step()
    assert all(p.is_cuda for p in cuda_model.parameters())
    assert all(s["momenta"].is_cuda for s in opt.state.values())
    for p, q in zip(cpu_model.parameters(), cuda_model.parameters()):
        torch.testing.assert_close(q.cpu(), p, atol=1e-4, rtol=1e-4)


@needs_cuda
def test_cuda_bf16_autocast_and_compile_agree_with_eager():
    torch.manual_seed(0)
    eager = mlp([64, 128, 10]).cuda()
    runs = {"eager": (eager, dict(autocast=False)), "bf16": (copy.deepcopy(eager), dict(autocast=True)),
            "compiled": (copy.deepcopy(eager), dict(autocast=False, compile=True))}
    x, y = torch.randn(32, 64, device="cuda"), torch.randint(0, 10, (32,), device="cuda")
    start = [p.detach().clone() for p in eager.parameters()]
    for model, kwargs in runs.values():
        opt = NeuralGraphOptimizer(model, weights=None, **kwargs)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for p0, p, q, r in zip(start, *(m.parameters() for m, _ in runs.values())):
        torch.testing.assert_close(r, p, atol=1e-5, rtol=1e-5)  # compiled
        # bfloat16 network (float32 update): the three steps agree to bfloat16 precision
        moved, error = (p - p0).abs(), (q - p).abs()
        assert error.mean() < 0.05 * moved.mean() and error.max() < 0.25 * moved.max()


def test_mlp_trains_on_real_digits():
    """A smoke check with real data: an (untrained) learned step is a bounded, finite update."""
    from l2o_graphs.data import load_images

    x, y = load_images("digits", "train")
    model = mlp([64, 32, 10])
    opt = NeuralGraphOptimizer(model, weights=None)
    for i in range(5):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[:256]), y[:256])
        loss.backward()
        before = _params(model)
        opt.step()
        step = max((a - b).abs().max().item() for a, b in zip(_params(model), before))
        assert 0 < step < 1.0 and torch.isfinite(loss)


def test_bfloat16_autocast_of_the_update_network():
    a, b = _model(), _model()
    _train(a, NeuralGraphOptimizer(a, weights=None), 2)
    _train(b, NeuralGraphOptimizer(b, weights=None, autocast=True), 2)
    for p, q in zip(a.parameters(), b.parameters()):
        assert p.dtype == q.dtype == torch.float32 and bool(torch.isfinite(q).all())
        # the learned step (about 1e-2 per element) agrees to bfloat16 precision
        assert (p - q).abs().max().item() < 2e-3


@pytest.mark.slow
def test_compiled_update_network_matches_eager():
    model = mlp([6, 5, 3])
    twin = copy.deepcopy(model)
    x, y = torch.randn(4, 6), torch.randint(0, 3, (4,))
    for m, opt in ((model, NeuralGraphOptimizer(model, weights=None)),
                   (twin, NeuralGraphOptimizer(twin, weights=None, compile=True))):
        for _ in range(2):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("net", NETS)
def test_untrained_adam_residual_rule_is_adam(net):
    """Under ``adam-residual`` the fresh network's output layer is zero: its steps are Adam's."""
    a, b = _model(), _model()
    _train(a, torch.optim.Adam(a.parameters(), lr=1e-3, eps=1e-8), 3)
    _train(b, NeuralGraphOptimizer(b, weights=None, net=net, net_config={"update": "adam-residual"}), 3)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(q, p, atol=1e-6, rtol=1e-5)


def test_unknown_update_rule_is_rejected():
    with pytest.raises(ValueError, match="unknown update rule"):
        NeuralGraphOptimizer(_model(), weights=None, net_config={"update": "sgd"})


def test_memory_bytes_counts_state_workspace_and_topology():
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    n = sum(p.numel() for p in model.parameters())
    opt = NeuralGraphOptimizer(model)
    assert opt.memory_bytes()["state"] == 0 and opt.memory_bytes()["topology"] > 0
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    memory = opt.memory_bytes()
    # five momenta and a second moment in float32 per element, plus per tensor two int64 counters and
    # a float32 step
    assert memory["state"] == 24 * n + 4 * (8 + 8 + 4)
    assert memory["workspace"] >= 13 * 4 * n  # thirteen float32 features per element (plus graph padding)
    assert memory["topology"] == opt.graph.nbytes  # one graph: not copied onto the device it is on
    flat = NeuralGraphOptimizer(model, weights=None, net="ff")
    flat.step()
    assert flat.memory_bytes()["topology"] == 0 and flat.memory_bytes()["workspace"] == 13 * 4 * n
