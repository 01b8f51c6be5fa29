"""Faults must not reach parameters: huge, NaN and inf gradients, parameters and network weights
(fault injection over random architectures with hypothesis), no drift without gradients, every
float dtype, bad arguments and state dicts refused, copies and pickles that work, bad weights
files refused with their path."""
import copy
import math
import pickle
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from l2o_graphs import NeuralGraphOptimizer
from l2o_graphs.features import accumulate, init_moments
from l2o_graphs.nn import NETS, build_net
from l2o_graphs.optim import load_weights, save_weights


def mlp(widths=(4, 8, 3)):
    torch.manual_seed(0)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


def set_grads(model, seed=1):
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=generator)


def all_finite(model):
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_moments_stay_finite_for_any_finite_gradient():
    largest = torch.finfo(torch.float32).max
    grad = torch.tensor([2e19, -largest, largest, 1e-3])
    momenta, second = (x["g"] for x in init_moments({"g": grad}))
    for _ in range(50):
        momenta, second = accumulate(grad, momenta, second)
        assert torch.isfinite(momenta).all() and torch.isfinite(second).all()
    # below the bounds nothing changes: Adam's moving averages exactly
    small = torch.tensor([3.0, -0.5])
    m, v = (x["g"] for x in init_moments({"g": small}))
    m, v = accumulate(small, m, v)
    torch.testing.assert_close(v, 0.001 * small ** 2, rtol=0, atol=0)
    torch.testing.assert_close(m[..., 1], 0.1 * small)


def test_a_huge_finite_gradient_reaches_no_parameter():
    model = mlp()
    opt = NeuralGraphOptimizer(model)
    for step in range(5):
        set_grads(model, step)
        if step == 1:
            model[0].weight.grad[0, 0] = 2e19  # squared, it would overflow float32
        opt.step()
        assert all_finite(model)
    assert all(torch.isfinite(s["second_moment"]).all() for s in opt.state.values())


def test_a_non_finite_parameter_is_isolated_like_a_non_finite_gradient():
    """The other tensors get exactly the update they get when that tensor reads as all zeros."""
    model, reference = mlp(), mlp()
    with torch.no_grad():
        model[0].weight[1, 2] = float("nan")
        reference[0].weight.zero_()
    opts = [NeuralGraphOptimizer(m) for m in (model, reference)]
    for m in (model, reference):
        set_grads(m)
    reference[0].weight.grad.zero_()
    for opt in opts:
        opt.step()
    assert opts[0].skipped_updates == 1 and int(torch.isnan(model[0].weight).sum()) == 1  # kept, not updated
    for name, p in model.named_parameters():
        if name != "0.weight":
            assert torch.isfinite(p).all()
            torch.testing.assert_close(p, dict(reference.named_parameters())[name], rtol=0, atol=0)


def test_a_non_finite_update_is_skipped_counted_and_leaves_the_moments():
    model = mlp()
    opt = NeuralGraphOptimizer(model, lr=1e30, weight_decay=1e30)  # finite, but the decayed value overflows
    set_grads(model)
    before = {n: p.clone() for n, p in model.named_parameters()}
    opt.step()
    assert opt.skipped_updates == 4 and all_finite(model)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, before[name], rtol=0, atol=0)
    assert not opt.state or all(int(s["updates"]) == 0 for s in opt.state.values())
    assert all(float(s["second_moment"].abs().max()) == 0 for s in opt.state.values())


@settings(max_examples=25, deadline=None)
@given(widths=st.lists(st.integers(1, 9), min_size=2, max_size=4),
       fault=st.sampled_from(["huge", "nan-grad", "inf-grad", "nan-param", "inf-param"]),
       where=st.integers(0, 10), net=st.sampled_from(["ng-gnn", "ff"]))
@pytest.mark.slow
def test_injected_faults_over_random_architectures(widths, fault, where, net):
    model = mlp(tuple(widths))
    opt = NeuralGraphOptimizer(model, weights="default" if net == "ng-gnn" else None, net=net)
    params = list(model.named_parameters())
    name, target = params[where % len(params)]
    set_grads(model)
    with torch.no_grad():
        if fault == "huge":
            target.grad.view(-1)[0] = 3e38
        elif fault.endswith("grad"):
            target.grad.view(-1)[0] = math.nan if fault == "nan-grad" else math.inf
        else:
            target.view(-1)[0] = math.nan if fault == "nan-param" else math.inf
    opt.step()
    for other, p in params:
        if other != name or not fault.endswith("param"):
            assert torch.isfinite(p).all(), (fault, other)
    if fault == "huge":
        assert opt.skipped_updates <= 1
    else:
        assert opt.skipped_updates == 1


@pytest.mark.slow
def test_without_gradients_the_shipped_default_does_not_drift():
    model = mlp((16, 32, 10))
    before = {n: p.clone() for n, p in model.named_parameters()}
    opt = NeuralGraphOptimizer(model)
    for _ in range(1000):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, before[name], rtol=0, atol=0)
    # negative control: an untrained network under the paper rule moves parameters on zero gradients
    control = mlp((16, 32, 10))
    opt = NeuralGraphOptimizer(control, weights=None, seed=0)
    for p in control.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert any(not torch.equal(p, before[n]) for n, p in control.named_parameters())


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_every_net_steps_models_of_every_float_dtype(net, dtype):
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4)).to(dtype)
    opt = NeuralGraphOptimizer(model, weights=None, net=net)
    x, y = torch.randn(5, 1, 8, 8, dtype=dtype), torch.randint(4, (5,))
    before = [p.clone() for p in model.parameters()]
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x).float(), y).backward()
        opt.step()
    for p, p0 in zip(model.parameters(), before):
        assert p.dtype == dtype and torch.isfinite(p.float()).all() and not torch.equal(p, p0)
    moments = opt.state[model[0].weight]["momenta"]
    assert moments.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)


@pytest.mark.parametrize("kwargs", [dict(lr=math.nan), dict(lr=-1.0), dict(lr=math.inf), dict(weight_decay=math.inf),
                                    dict(weight_decay=-0.1), dict(lam=math.inf), dict(lam=0.0), dict(lr="1")])
def test_bad_hyperparameters_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        NeuralGraphOptimizer(mlp(), **kwargs)


@pytest.mark.parametrize("group", [{"lr": -1.0}, {"lr": math.nan}, {"weight_decay": math.inf}])
def test_a_param_group_with_bad_hyperparameters_is_refused_and_not_kept(group):
    model = mlp()
    opt = NeuralGraphOptimizer(model.parameters(), module=model)
    extra = nn.Parameter(torch.zeros(3))
    model.register_parameter("extra", extra)
    with pytest.raises(ValueError, match="finite number"):
        opt.add_param_group({"params": [extra], **group})
    assert len(opt.param_groups) == 1


def test_foreign_state_dicts_are_refused_before_anything_changes():
    model = mlp()
    opt = NeuralGraphOptimizer(model)
    set_grads(model)
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    other_model = mlp((4, 5, 3))
    other = NeuralGraphOptimizer(other_model)
    set_grads(other_model)
    other.step()
    with pytest.raises(ValueError, match="another model"):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match="not a NeuralGraphOptimizer state dict"):
        opt.load_state_dict(torch.optim.Adam(model.parameters()).state_dict())
    poisoned = copy.deepcopy(saved)
    first = next(iter(poisoned["l2o"]["weights"]))
    poisoned["l2o"]["weights"][first] = torch.full_like(poisoned["l2o"]["weights"][first], math.nan)
    with pytest.raises(ValueError, match="NaN or inf"):
        opt.load_state_dict(poisoned)
    poisoned = copy.deepcopy(saved)
    poisoned["state"][0]["second_moment"][0, 0] = math.inf
    with pytest.raises(ValueError, match="NaN or inf moments"):
        opt.load_state_dict(poisoned)
    poisoned = copy.deepcopy(saved)
    poisoned["param_groups"][0]["lr"] = math.nan
    with pytest.raises(ValueError, match="param group lr"):
        opt.load_state_dict(poisoned)
    after = opt.state_dict()
    assert after["param_groups"] == saved["param_groups"]
    for key, value in saved["l2o"]["weights"].items():
        assert torch.equal(after["l2o"]["weights"][key], value)


@pytest.mark.parametrize("copier", [copy.deepcopy, lambda obj: pickle.loads(pickle.dumps(obj))], ids=["deepcopy", "pickle"])
def test_copies_and_pickles_step_like_the_original(copier):
    model = mlp()
    opt = NeuralGraphOptimizer(model)
    set_grads(model)
    opt.step()
    model2, opt2 = copier((model, opt))
    for m, o in ((model, opt), (model2, opt2)):
        set_grads(m, seed=5)
        o.step()
    for p, q in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
        assert p is not q


def test_bad_weights_files_are_refused_with_their_path(tmp_path):
    good = tmp_path / "good.pt"
    save_weights(build_net("ng-gnn", update="adam-layer"), good)
    data = good.read_bytes()
    cases = {"empty.pt": b"", "truncated.pt": data[:len(data) // 2], "garbage.pt": b"\x00not a file" * 50}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    small = build_net("ff")
    save_weights(small, tmp_path / "huge.pt")
    blob = torch.load(tmp_path / "huge.pt", weights_only=True)
    blob["config"]["hidden"] = 10 ** 6  # a small file that asks for huge layers
    torch.save(blob, tmp_path / "huge.pt")
    nan = build_net("ff")
    with torch.no_grad():
        next(nan.parameters()).fill_(math.nan)
    save_weights(nan, tmp_path / "nan.pt")
    for name in (*cases, "huge.pt", "nan.pt"):
        start = time.perf_counter()
        with pytest.raises(ValueError) as err:
            load_weights(tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and time.perf_counter() - start < 5, str(err.value)
    with pytest.raises(ValueError, match="NaN or inf"):
        NeuralGraphOptimizer(mlp(), weights=tmp_path / "nan.pt", net="ff")
