"""Update rules: the zero-initialised ones are exactly their hand-designed base before
meta-training, and no network output can push a bounded rule's step past its documented bound."""
import math

import pytest
import torch
from torch import nn

from l2o_graphs import NeuralGraphOptimizer
from l2o_graphs.features import BETAS, BETA2, adam_direction
from l2o_graphs.rules import ADAM_STEP, LOG_SCALE_BOUND, NEURON_LOG_SCALE_BOUND, RULES, RuleState, get_rule
from l2o_graphs.tasks import mlp

ZERO_INIT = [name for name, rule in RULES.items() if rule.zero_init]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return mlp([12, 10, 8, 10])


def _batches(steps: int):
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(6, 12, generator=gen), torch.randint(0, 10, (6,), generator=gen)) for _ in range(steps)]


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 4) -> None:
    for x, y in _batches(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_registry_lists_the_rules_and_refuses_unknown_names():
    assert {"paper", "adam-residual", "adam-scaled", "normalized"} <= set(RULES)
    assert not RULES["paper"].zero_init and RULES["adam-scaled"].zero_init
    with pytest.raises(ValueError, match="unknown update rule 'sgd'; choose one of paper"):
        get_rule("sgd")


@pytest.mark.parametrize("rule", ["adam-scaled", "adam-pooled", "adam-layer"])
@pytest.mark.parametrize("net", ["ng-gnn", "ff"])
def test_untrained_adam_based_rules_are_torch_adam(net, rule):
    reference, model = _model(), _model()
    _train(reference, torch.optim.Adam(reference.parameters(), lr=ADAM_STEP))
    _train(model, NeuralGraphOptimizer(model, weights=None, net=net, net_config={"update": rule}))
    for p, q in zip(reference.parameters(), model.parameters()):
        torch.testing.assert_close(q, p, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("net", ["ng-gnn", "ff"])
def test_untrained_normalized_is_adam_direction_normalised_per_tensor(net):
    """Reference: Adam's moments kept by hand, each tensor's direction divided by its RMS."""
    reference, model = _model(), _model()
    m1 = [torch.zeros_like(p) for p in reference.parameters()]
    v = [torch.zeros_like(p) for p in reference.parameters()]
    for t, (x, y) in enumerate(_batches(4), start=1):
        reference.zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        with torch.no_grad():
            for p, m_, v_ in zip(reference.parameters(), m1, v):
                m_.lerp_(p.grad, 1 - 0.9)
                v_.lerp_(p.grad * p.grad, 1 - BETA2)
                a = (m_ / (1 - 0.9 ** t)) / ((v_ / (1 - BETA2 ** t)).sqrt() + 1e-8)
                p.sub_(ADAM_STEP * a / a.pow(2).mean().sqrt())
    _train(model, NeuralGraphOptimizer(model, weights=None, net=net, net_config={"update": "normalized"}))
    for p, q in zip(reference.parameters(), model.parameters()):
        torch.testing.assert_close(q, p, atol=1e-7, rtol=1e-5)


def _state(shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    momenta = torch.randn(*shape, len(BETAS), generator=gen)
    second = torch.rand(*shape, generator=gen) + 0.01
    return RuleState(momenta, second, updates=7, lam=0.01)


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e6])
def test_bounded_rules_keep_the_step_bounded_for_any_output(scale):
    gen = torch.Generator().manual_seed(2)
    shape = (30, 20)
    state = _state(shape)
    a = adam_direction(state.momenta, state.second, state.updates)
    for _ in range(5):
        d, m = (torch.randn(shape, generator=gen) * scale for _ in range(2))
        step = get_rule("adam-scaled").fn(d, m, state)
        assert bool((step.abs() <= ADAM_STEP * (10 * a.abs() + 1) * (1 + 1e-5)).all())
        for pooled in ("adam-pooled", "adam-layer"):
            step = get_rule(pooled).fn(d, m, state._replace(layer_m=m.mean() * scale))
            assert bool((step.abs() <= 20 * ADAM_STEP * a.abs() * (1 + 1e-5)).all())
        step = get_rule("normalized").fn(d, m, state)
        rms = float(step.pow(2).mean().sqrt())
        assert ADAM_STEP / 10 * (1 - 1e-5) <= rms <= ADAM_STEP * 10 * (1 + 1e-5)
        assert torch.isfinite(step).all()


def test_paper_rule_is_not_bounded_negative_control():
    """The same check on the unbounded ``paper`` rule fails: the bound tests can fail."""
    state = _state((30, 20))
    d = torch.ones(30, 20)
    m = torch.full((30, 20), 1e3)
    step = get_rule("paper").fn(d, m, state)
    assert float(step.abs().max()) > ADAM_STEP * 10 * 100


def test_normalized_learned_scale_reaches_its_bounds():
    state = _state((8, 8))
    for sign in (1.0, -1.0):
        m = torch.full((8, 8), sign * 1e4)
        step = get_rule("normalized").fn(torch.zeros(8, 8), m, state)
        rms = float(step.pow(2).mean().sqrt())
        assert rms == pytest.approx(ADAM_STEP * math.exp(sign * LOG_SCALE_BOUND), rel=1e-5)


def test_adam_pooled_scales_whole_tensors_and_neurons_not_elements():
    """Reference: the factor per tensor from the mean of ``m``, per row from the row-mean of
    ``d``; elements of one row move by the same multiple of Adam's step whatever their own
    outputs, and both factors reach their bounds."""
    gen = torch.Generator().manual_seed(3)
    shape = (6, 4, 3, 3)  # a conv weight: 6 output channels
    state = _state(shape, seed=4)
    a = adam_direction(state.momenta, state.second, state.updates)
    d, m = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    step = get_rule("adam-pooled").fn(d, m, state)
    factor = step / (ADAM_STEP * a)
    expected = torch.exp(LOG_SCALE_BOUND * torch.tanh(m.mean())
                         + NEURON_LOG_SCALE_BOUND * torch.tanh(d.mean(dim=(1, 2, 3)))).view(6, 1, 1, 1)
    torch.testing.assert_close(factor, expected.expand(shape), rtol=1e-5, atol=0)
    shuffled = get_rule("adam-pooled").fn(d, m[torch.randperm(6, generator=gen)], state)
    torch.testing.assert_close(shuffled, step, rtol=1e-5, atol=0)  # only m's tensor mean counts
    huge = get_rule("adam-pooled").fn(torch.full(shape, 1e4), torch.full(shape, 1e4), state)
    torch.testing.assert_close(huge / (ADAM_STEP * a), torch.full(shape, 20.0), rtol=1e-5, atol=0)
    bias_state = _state((6,), seed=5)
    bias_d = torch.randn(6, generator=gen)
    bias_step = get_rule("adam-pooled").fn(bias_d, torch.zeros(6), bias_state)
    bias_a = adam_direction(bias_state.momenta, bias_state.second, bias_state.updates)
    torch.testing.assert_close(bias_step, ADAM_STEP * bias_a * torch.exp(NEURON_LOG_SCALE_BOUND * torch.tanh(bias_d)))


@pytest.mark.parametrize("rule", ["adam-layer", "adam-pooled"])
def test_adam_layer_gives_biases_the_factor_of_the_weight_feeding_their_neurons(rule):
    """Reference: one step of an MLP from the network's captured outputs. Under ``adam-layer`` a
    bias moves by Adam's step times its weight's tensor factor (from the mean of the weight's
    ``m``) and its own per-neuron factor; ``adam-pooled`` (the negative control) uses the bias's
    own ``m`` and must miss the reference for the biases while matching it for the weights."""
    model = _model()
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = NeuralGraphOptimizer(model, weights=None, net="ng-gnn", net_config={"update": rule})
    torch.manual_seed(3)
    for name, p in opt.net.named_parameters():
        if "dec_out" in name:
            nn.init.normal_(p, std=0.5)
    captured = {}
    forward = opt.net.forward

    def capture(*args, **kwargs):
        outputs, state = forward(*args, **kwargs)
        captured.update({n: o.detach().clone() for n, o in outputs.items()})
        return outputs, state

    opt.net.forward = capture
    x, y = _batches(1)[0]
    nn.functional.cross_entropy(model(x), y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    misses = []
    for name, p in model.named_parameters():
        owner = name.replace("bias", "weight")
        d = captured[name][..., 0]
        layer = LOG_SCALE_BOUND * torch.tanh(captured[owner][..., 1].mean())
        a = grads[name] / (grads[name].abs() + 1e-8)  # Adam's first step
        per_neuron = d.mean(dim=1, keepdim=True) if d.dim() == 2 else d  # a bias: one neuron per element
        expected = initial[name] - ADAM_STEP * a * torch.exp(layer + NEURON_LOG_SCALE_BOUND * torch.tanh(per_neuron))
        if not torch.allclose(p.detach(), expected, rtol=1e-5, atol=1e-8):
            misses.append(name)
    assert misses == ([] if rule == "adam-layer" else ["1.bias", "3.bias", "5.bias"])


@pytest.mark.parametrize("rule", ZERO_INIT)
def test_base_update_is_the_untrained_network_bit_for_bit(rule):
    """``base_update`` (no network) against ``learned_update`` with the zero-initialised network,
    over steps that include a non-finite gradient and weight decay."""
    from l2o_graphs.graph import NeuralGraph
    from l2o_graphs.nn import build_net
    from l2o_graphs.optim.update import base_update, init_state, learned_update

    model = _model()
    net = build_net("ng-gnn", update=rule)
    graph = NeuralGraph.from_module(model)
    learned = based = {n: p.detach() for n, p in model.named_parameters()}
    state_l = state_b = init_state(learned, net)
    gen = torch.Generator().manual_seed(3)
    for step in range(4):
        grads = {n: torch.randn(p.shape, generator=gen) for n, p in learned.items()}
        if step == 1:
            grads["1.weight"][0, 0] = float("nan")
        with torch.no_grad():
            new_l, state_l = learned_update(net, graph, learned, grads, state_l, weight_decay=0.1)
        new_b, state_b = base_update(rule, based, grads, state_b, weight_decay=0.1)
        assert set(new_l) == set(new_b)
        learned = {n: new_l.get(n, p) for n, p in learned.items()}
        based = {n: new_b.get(n, p) for n, p in based.items()}
        for n in learned:
            assert torch.equal(learned[n], based[n]), n
    assert state_l.skipped == state_b.skipped and state_l.updates == state_b.updates
    assert state_b.skipped["1.weight"] == 1


def test_base_update_moves_like_the_net_only_while_the_output_layer_is_zero():
    """Negative control: once the output layer is not zero the two differ."""
    from l2o_graphs.graph import NeuralGraph
    from l2o_graphs.nn import build_net
    from l2o_graphs.optim.update import base_update, init_state, learned_update

    model = _model()
    net = build_net("ng-gnn", update="adam-layer")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    params = {n: p.detach() for n, p in model.named_parameters()}
    grads = {n: torch.randn_like(p) for n, p in params.items()}
    with torch.no_grad():
        new_l, _ = learned_update(net, NeuralGraph.from_module(model), params, grads, init_state(params, net))
    new_b, _ = base_update("adam-layer", params, grads, init_state(params, net))
    assert not all(torch.equal(new_l[n], new_b[n]) for n in params)


def test_base_update_refuses_a_rule_without_a_base():
    from l2o_graphs.optim.update import base_update, init_state

    params = {"w": torch.zeros(3)}
    with pytest.raises(ValueError, match="'paper' is learned from scratch: it has no base rule"):
        base_update("paper", params, {"w": torch.ones(3)}, init_state(params, None))


def test_step_scale_multiplies_the_step_and_travels_with_the_weights(tmp_path):
    """An untrained adam-layer net with step_scale 2 is Adam at 2e-3; the scale survives a save
    and load; bad scales are refused."""
    from l2o_graphs.nn import build_net
    from l2o_graphs.optim import load_weights, save_weights

    net = build_net("ng-gnn", update="adam-layer", step_scale=2.0)
    save_weights(net, tmp_path / "w.pt")
    loaded = load_weights(tmp_path / "w.pt")
    assert loaded.step_scale == 2.0 and build_net("ng-gnn").step_scale == 1.0
    reference, model = _model(), _model()
    _train(reference, torch.optim.Adam(reference.parameters(), lr=2 * ADAM_STEP))
    _train(model, NeuralGraphOptimizer(model, weights=loaded))
    for p, q in zip(reference.parameters(), model.parameters()):
        torch.testing.assert_close(q, p, atol=1e-7, rtol=1e-6)
    for bad in (0.0, -1.0, float("inf"), True, "2"):
        with pytest.raises(ValueError, match="step_scale must be a positive finite number"):
            build_net("ng-gnn", step_scale=bad)
