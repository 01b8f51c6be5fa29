"""Particles unrolled together (one trunk forward for all) against one unroll per particle."""
import pytest
import torch

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.meta.particles import output_layer_names, output_layers, particle_graph, unroll_particles
from l2o_graphs.meta.pes import flat_parameters, set_flat_parameters
from l2o_graphs.meta.unroll import Trajectory, unroll
from l2o_graphs.nn import build_net
from l2o_graphs.tasks.suites import load_suite
from l2o_graphs.tasks.task import Task


def _net():
    torch.manual_seed(0)
    net = build_net("ng-gnn", update="adam-layer")
    with torch.no_grad():  # zero-initialised output layers would make every particle Adam
        net.edge_dec_out.weight.normal_(0, 0.5)
        net.node_dec_out.weight.normal_(0, 0.5)
    return net


def _specs(count):
    suite, gen = load_suite("tiny"), torch.Generator().manual_seed(3)
    return [suite.sample(gen) for _ in range(count)]


@pytest.mark.parametrize("trained", [["edge_dec_out", "node_dec_out"], ["edge_dec_out"]])
def test_particles_together_equal_one_unroll_each(trained):
    net = _net()
    meta = [p for n, p in net.named_parameters() if n.split(".")[0] in trained]
    names = output_layer_names(net, meta)
    theta = flat_parameters(meta)
    specs = _specs(3)
    flats = theta + 0.3 * torch.randn(len(specs), theta.numel(), generator=torch.Generator().manual_seed(1))
    tasks = [Task(spec) for spec in specs]
    graphs = [NeuralGraph.from_module(task.module).precompute() for task in tasks]
    alone = [Trajectory(spec, 100) for spec in specs]
    together = [Trajectory(spec, 100) for spec in specs]
    perturbed = build_net("ng-gnn", update="adam-layer")
    perturbed.load_state_dict(net.state_dict())
    perturbed_meta = [p for n, p in perturbed.named_parameters() if n.split(".")[0] in trained]
    # members at different steps: the first has run 3 steps already (its time features differ)
    set_flat_parameters(perturbed_meta, flats[0])
    unroll(perturbed, tasks[0], graphs[0], alone[0], 3, differentiable=False)
    unroll_particles(net, [(tasks[0], together[0])], particle_graph(graphs[:1]),
                     output_layers(net, names, flats[:1]), 3)
    expected = []
    for i, (task, graph, traj) in enumerate(zip(tasks, graphs, alone)):
        set_flat_parameters(perturbed_meta, flats[i])
        expected.append(unroll(perturbed, task, graph, traj, 4, differentiable=False, per_step=True))
    got = unroll_particles(net, list(zip(tasks, together)), particle_graph(graphs),
                           output_layers(net, names, flats), 4)
    for want, have, a, b in zip(expected, got, alone, together):
        torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-5)
        assert a.step == b.step and a.state.updates == b.state.updates
        for name in a.params:
            torch.testing.assert_close(b.params[name], a.params[name], rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(b.state.momenta[name], a.state.momenta[name], rtol=1e-4, atol=1e-6)


def test_particles_decode_with_their_own_layers_negative_control():
    """Every member decoded by member 0's layers is not the per-particle result."""
    net = _net()
    meta = [p for n, p in net.named_parameters() if n.split(".")[0] in ("edge_dec_out", "node_dec_out")]
    names = output_layer_names(net, meta)
    theta = flat_parameters(meta)
    specs = _specs(2)
    flats = theta + 0.3 * torch.randn(2, theta.numel(), generator=torch.Generator().manual_seed(1))
    tasks = [Task(spec) for spec in specs]
    union = particle_graph([NeuralGraph.from_module(t.module) for t in tasks])
    right = [Trajectory(s, 100) for s in specs]
    wrong = [Trajectory(s, 100) for s in specs]
    unroll_particles(net, list(zip(tasks, right)), union, output_layers(net, names, flats), 3)
    unroll_particles(net, list(zip(tasks, wrong)), union, output_layers(net, names, flats[[0, 0]]), 3)
    assert all(torch.equal(wrong[0].params[n], right[0].params[n]) for n in right[0].params)
    assert not all(torch.allclose(wrong[1].params[n], right[1].params[n], rtol=1e-4, atol=1e-6)
                   for n in right[1].params)


def test_only_graph_nets_with_output_layer_meta_parameters_batch():
    net = _net()
    outputs = [p for n, p in net.named_parameters() if n.startswith(("edge_dec_out", "node_dec_out"))]
    assert output_layer_names(net, outputs) == ["edge_dec_out.weight", "edge_dec_out.bias",
                                                "node_dec_out.weight", "node_dec_out.bias"]
    assert output_layer_names(net, list(net.parameters())) is None
    ff = build_net("ff", update="adam-layer")
    assert output_layer_names(ff, list(ff.parameters())) is None
    with pytest.raises(ValueError, match="particles' meta-parameters have 3 entries"):
        output_layers(net, ["edge_dec_out.bias"], torch.zeros(2, 3))


@pytest.mark.slow
@pytest.mark.parametrize("meta_loss", ["ratio", "relative"])
def test_meta_training_with_particles_together_follows_one_unroll_each(tmp_path, meta_loss):
    from l2o_graphs.meta import MetaConfig, MetaTrainer

    cfg = dict(net="ng-gnn", net_config={"update": "adam-layer"}, suite="tiny", estimator="pes",
               meta_parameters=["edge_dec_out", "node_dec_out"], outer_steps=3, meta_batch=3, unroll=4,
               trajectory_length=(6, 9), warmup=1, lr=3e-3, device="cpu", meta_loss=meta_loss)
    together = MetaTrainer(MetaConfig(**cfg), tmp_path / "together")
    alone = MetaTrainer(MetaConfig(**cfg, batch_particles=False), tmp_path / "alone")
    assert together.particle_layers is not None and alone.particle_layers is None
    for _ in range(3):  # trajectories end and are replaced: the union graph is rebuilt
        metrics = [together.outer_step(), alone.outer_step()]
        torch.testing.assert_close(metrics[0]["meta_loss"], metrics[1]["meta_loss"], rtol=1e-3, atol=1e-5)
        # the meta-gradients agree (Adam's first steps would amplify rounding in near-zero components)
        for a, b in zip(together.meta_params, alone.meta_params):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-2, atol=1e-3 * float(b.grad.abs().max()))


def test_members_refuse_rows_that_do_not_match():
    from l2o_graphs.nn.graph_nets import Members

    with pytest.raises(ValueError, match="every per-member field needs 2 rows, got \\[2, 3"):
        Members((0, 3, 5), (0, 4, 9), torch.zeros(3, 9))
    with pytest.raises(ValueError, match="needs 1 rows"):
        Members((0, 3), (0, 4), torch.zeros(1, 9), edge_out=(torch.zeros(2, 2, 8), torch.zeros(2, 2)))
