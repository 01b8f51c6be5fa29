"""PES: unbiased against the exact full-horizon meta-gradient where truncated backprop is not;
antithetic pairs cancel what does not depend on the meta-parameters; runs resume exactly."""
import json

import pytest
import torch

from l2o_graphs.meta import MetaConfig, MetaTrainer
from l2o_graphs.meta.pes import antithetic_noise, flat_parameters, pes_gradient, set_flat_parameters
from l2o_graphs.meta.trainer import CARRY, CHECKPOINT
from l2o_graphs.nn import build_net

# A quadratic trained by gradient descent with the learning-rate schedule
# lr_t = exp(theta_0 + theta_1 * t / T): the meta-parameters are theta.
CURVATURES = torch.linspace(0.01, 0.1, 6, dtype=torch.float64)
HORIZON, TRUNCATION = 200, 20
THETA = torch.tensor([-0.7, 0.5], dtype=torch.float64)


def _advance(theta: torch.Tensor, x: torch.Tensor, start: int, steps: int):
    """``theta [M, 2]``, ``x [M, D]``: ``steps`` descent steps from step ``start``; returns the new
    ``x`` and each particle's truncation loss (mean over the steps of the loss after each)."""
    losses = []
    for t in range(start, start + steps):
        lr = torch.exp(theta[:, 0] + theta[:, 1] * t / HORIZON)
        x = x - lr[:, None] * CURVATURES * x
        losses.append(0.5 * (CURVATURES * x * x).sum(1))
    return x, torch.stack(losses).mean(0)


def _exact_gradient() -> torch.Tensor:
    """Autograd through all 200 steps of the sum of the truncation losses."""
    theta = THETA.clone().requires_grad_()
    x, total = torch.ones(1, len(CURVATURES), dtype=torch.float64), 0.0
    for start in range(0, HORIZON, TRUNCATION):
        x, loss = _advance(theta[None], x, start, TRUNCATION)
        total = total + loss.sum()
    return torch.autograd.grad(total, theta)[0]


def _tbptt_gradient() -> torch.Tensor:
    """Truncated backprop: each truncation differentiated from its detached starting point."""
    x, grad = torch.ones(1, len(CURVATURES), dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for start in range(0, HORIZON, TRUNCATION):
        theta = THETA.clone().requires_grad_()
        x, loss = _advance(theta[None], x.detach(), start, TRUNCATION)
        grad += torch.autograd.grad(loss.sum(), theta)[0]
    return grad


def _pes_gradient(pairs: int, sigma: float, seed: int) -> torch.Tensor:
    """PES over the same truncations: the library's noise and estimator, particles vectorised."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.ones(2 * pairs, len(CURVATURES), dtype=torch.float64)
    accumulated = torch.zeros(pairs, 2, dtype=torch.float64)
    grad = torch.zeros(2, dtype=torch.float64)
    for start in range(0, HORIZON, TRUNCATION):
        noise = antithetic_noise(pairs, 2, sigma, gen, dtype=torch.float64)
        accumulated += noise
        x, losses = _advance(torch.cat([THETA + noise, THETA - noise]), x, start, TRUNCATION)
        grad += pes_gradient(losses[:pairs], losses[pairs:], accumulated, sigma)
    return grad


def test_pes_is_unbiased_and_short_truncated_backprop_is_not():
    exact = _exact_gradient()
    pes = _pes_gradient(pairs=20000, sigma=0.01, seed=0)
    tbptt = _tbptt_gradient()
    error = lambda g: float((g - exact).norm() / exact.norm())  # noqa: E731
    assert error(pes) < 0.05, (pes, exact)
    assert error(tbptt) > 0.3, (tbptt, exact)  # measurably biased on the same task


def test_pes_without_persistence_is_biased_negative_control():
    """Dropping the accumulated noise (plain ES per truncation) gives truncated backprop's bias:
    the persistent sum is what the unbiasedness test checks."""
    gen = torch.Generator().manual_seed(0)
    pairs, sigma = 20000, 0.01
    x = torch.ones(2 * pairs, len(CURVATURES), dtype=torch.float64)
    grad = torch.zeros(2, dtype=torch.float64)
    for start in range(0, HORIZON, TRUNCATION):
        noise = antithetic_noise(pairs, 2, sigma, gen, dtype=torch.float64)
        x, losses = _advance(torch.cat([THETA + noise, THETA - noise]), x, start, TRUNCATION)
        grad += pes_gradient(losses[:pairs], losses[pairs:], noise, sigma)
    exact = _exact_gradient()
    assert float((grad - exact).norm() / exact.norm()) > 0.3


def test_antithetic_pairs_cancel_a_constant_loss():
    gen = torch.Generator().manual_seed(0)
    accumulated = antithetic_noise(8, 50, 0.1, gen)
    losses = torch.rand(8, generator=gen)
    assert torch.equal(pes_gradient(losses, losses.clone(), accumulated, 0.1), torch.zeros(50))


def test_pes_recovers_a_linear_loss_gradient():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(5, generator=gen, dtype=torch.float64)
    noise = antithetic_noise(40000, 5, 0.05, gen, dtype=torch.float64)
    estimate = pes_gradient(noise @ w, -(noise @ w), noise, 0.05)
    torch.testing.assert_close(estimate, w, atol=0.03, rtol=0.0)


def test_flat_parameters_round_trip():
    net = build_net("ng-gnn", update="adam-scaled")
    flat = flat_parameters(net.parameters())
    assert flat.numel() == sum(p.numel() for p in net.parameters())
    other = build_net("ng-gnn", update="adam-scaled")
    set_flat_parameters(other.parameters(), flat)
    for a, b in zip(net.parameters(), other.parameters()):
        assert torch.equal(a, b)


def _config(**overrides):
    base = dict(net="ng-gnn", net_config={"update": "adam-scaled"}, suite="digits-mlp", estimator="pes",
                outer_steps=6, meta_batch=2, unroll=4, trajectory_length=(8, 12), warmup=2, lr=3e-3,
                checkpoint_every=3, device="cpu")
    return MetaConfig(**{**base, **overrides})


@pytest.mark.slow
@pytest.mark.parametrize("meta_loss", ["ratio", "relative"])
def test_pes_meta_training_moves_the_meta_parameters_and_resumes_exactly(tmp_path, meta_loss):
    cfg = _config(meta_loss=meta_loss)
    initial = flat_parameters(MetaTrainer(cfg, tmp_path / "fresh").net.parameters())
    straight = MetaTrainer(cfg, tmp_path / "a").run(progress=False)
    assert not torch.equal(flat_parameters(straight.parameters()), initial)
    MetaTrainer(cfg, tmp_path / "b").run(progress=False, stop_after=4)  # "killed" one step after a checkpoint
    resumed = MetaTrainer(cfg, tmp_path / "b", resume=True)
    assert resumed.step == 3
    resumed.run(progress=False)
    assert torch.equal(flat_parameters(resumed.net.parameters()), flat_parameters(straight.parameters()))
    logged = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]


def test_compact_state_is_small_and_carries_a_run_on(tmp_path):
    cfg = _config(outer_steps=5)
    trainer = MetaTrainer(cfg, tmp_path / "a")
    trainer.run(progress=False, stop_after=3)
    carry = tmp_path / "a" / CARRY
    assert carry.stat().st_size < 10 * 2 ** 20
    blob = torch.load(carry, weights_only=True)
    assert "trajectories" not in blob and blob["step"] == 3
    # carried elsewhere: a run directory holding only the compact state
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / CARRY).write_bytes(carry.read_bytes())
    carried = MetaTrainer(cfg, moved, resume=True)
    assert carried.step == 3 and not (moved / CHECKPOINT).exists()
    assert torch.equal(flat_parameters(carried.net.parameters()), flat_parameters(trainer.net.parameters()))
    assert carried.outer.state_dict()["state"][0]["exp_avg"].equal(trainer.outer.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(carried.noise_sampler.get_state(), trainer.noise_sampler.get_state())
    carried.run(progress=False)
    assert carried.step == 5


@pytest.mark.parametrize("estimator", ["pes", "tbptt"])
def test_only_the_chosen_meta_parameters_change(tmp_path, estimator):
    cfg = _config(estimator=estimator, meta_parameters=["edge_dec_out", "node_dec_out"], outer_steps=3)
    before = dict(MetaTrainer(cfg, tmp_path / "fresh").net.named_parameters())
    after = dict(MetaTrainer(cfg, tmp_path / "run").run(progress=False).named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and changed <= {"edge_dec_out.weight", "edge_dec_out.bias", "node_dec_out.weight",
                                   "node_dec_out.bias"}
    with pytest.raises(ValueError, match="no parameter of NGGNN starts with 'decoder'"):
        MetaTrainer(_config(meta_parameters=["decoder"]), tmp_path / "bad")


def test_pes_config_refuses_autograd_only_options():
    with pytest.raises(ValueError, match="which the 'pes' estimator runs without autograd"):
        _config(second_order=True)
    with pytest.raises(ValueError, match="'estimator'"):
        _config(estimator="reinforce")
    with pytest.raises(ValueError, match="'pes_sigma'"):
        _config(pes_sigma=0.0)


def test_relative_meta_loss_weights_steps_behind_the_reference():
    from l2o_graphs.meta.unroll import relative_meta_loss

    reference = torch.tensor([-0.1, -0.2, -0.3, -0.4])
    behind = reference + torch.tensor([0.2, -0.4, 0.2, 0.2])  # 0.05 behind on average
    ahead = reference - torch.tensor([0.2, -0.4, 0.2, 0.2])
    # the truncation's mean difference counts once ahead, (1 + 3) times behind
    torch.testing.assert_close(relative_meta_loss(behind, reference, 3.0), torch.tensor(0.2))
    torch.testing.assert_close(relative_meta_loss(ahead, reference, 3.0), torch.tensor(-0.05))
    torch.testing.assert_close(relative_meta_loss(behind, reference, 0.0), torch.tensor(0.05))
    assert relative_meta_loss(reference, reference.clone(), 3.0) == 0


def test_ahead_cap_stops_rewarding_gains_past_it():
    from l2o_graphs.meta.unroll import relative_meta_loss

    reference = torch.tensor([-0.1, -0.2, -0.3, -0.4])
    far_ahead, farther = reference - 0.5, reference - 0.9
    near_ahead, behind = reference - 0.05, reference + 0.05
    # past the cap every truncation scores -cap: an antithetic pair there has no difference to estimate from
    assert relative_meta_loss(far_ahead, reference, 3.0, ahead_cap=0.2) == relative_meta_loss(
        farther, reference, 3.0, ahead_cap=0.2)
    torch.testing.assert_close(relative_meta_loss(far_ahead, reference, 3.0, ahead_cap=0.2), torch.tensor(-0.2))
    # within the cap, and behind the reference, the cap changes nothing
    for ratios in (near_ahead, behind):
        torch.testing.assert_close(relative_meta_loss(ratios, reference, 3.0, ahead_cap=0.2),
                                   relative_meta_loss(ratios, reference, 3.0))
    # negative control: without the cap the farther run is rewarded more
    assert relative_meta_loss(farther, reference, 3.0) < relative_meta_loss(far_ahead, reference, 3.0)


def test_ahead_cap_is_checked():
    with pytest.raises(ValueError, match="'ahead_cap'"):
        _config(meta_loss="relative", ahead_cap=0.0)
    with pytest.raises(ValueError, match="ahead_cap must be a finite number or null"):
        _config(meta_loss="relative", ahead_cap="big")
    with pytest.raises(ValueError, match="ahead_cap caps the gain"):
        _config(ahead_cap=0.2)  # the default meta-loss has no base rule to be ahead of
    assert _config(meta_loss="relative", ahead_cap=0.2).ahead_cap == 0.2


def test_untrained_rule_matches_its_reference_run_exactly():
    """An untrained zero-initialised net and the base rule, unrolled from the same trajectory
    spec, see the same losses bit for bit: the relative meta-loss is exactly 0; a net whose
    output layer moved is not (negative control)."""
    from l2o_graphs.meta.unroll import TrajectoryPair, relative_meta_loss, unroll
    from l2o_graphs.tasks.suites import load_suite
    from l2o_graphs.tasks.task import Task

    spec = load_suite("digits-mlp").sample(torch.Generator().manual_seed(0))
    task = Task(spec)
    from l2o_graphs.graph import NeuralGraph
    graph = NeuralGraph.from_module(task.module).precompute()
    net = build_net("ng-gnn", update="adam-layer")
    pair = TrajectoryPair.new(spec, 20, reference=True)
    for _ in range(2):  # two truncations: the state carried between them must agree too
        reference = unroll(net, task, None, pair.reference, 5, base_rule=True, per_step=True)
        learned = unroll(net, task, graph, pair.plus, 5, differentiable=False, per_step=True)
        assert torch.equal(learned, reference)
        assert relative_meta_loss(learned, reference, 2.0) == 0
    with torch.no_grad():
        net.edge_dec_out.weight.add_(0.05)
    moved = unroll(net, task, graph, pair.minus, 10, differentiable=False, per_step=True)
    assert not torch.equal(moved[5:], reference)


def test_relative_meta_loss_needs_pes_and_a_rule_with_a_base(tmp_path):
    with pytest.raises(ValueError, match="meta_loss 'relative' needs the 'pes' estimator"):
        _config(meta_loss="relative", estimator="tbptt")
    with pytest.raises(ValueError, match="'meta_loss'"):
        _config(meta_loss="adam")
    with pytest.raises(ValueError, match="'behind_weight'"):
        _config(behind_weight=-1.0)
    with pytest.raises(ValueError, match="the rule 'paper' has none"):
        MetaTrainer(_config(meta_loss="relative", net_config={"update": "paper"}), tmp_path / "run")
