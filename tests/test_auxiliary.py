"""Auxiliary weight-space tasks on the update network's trunk (INR classification, generalization
prediction): invariance, configuration, and their place in meta-training."""
import json

import pytest
import torch

from l2o_graphs.meta import MetaConfig, MetaTrainer
from l2o_graphs.meta.auxiliary import auxiliary_losses, build_auxiliary, check_auxiliary
from l2o_graphs.meta.plot import plot_run
from l2o_graphs.nn import build_net
from l2o_graphs.zoo import load_zoo
from permutations import permute_plain_cnn, permute_sirens


def _tasks(net, inr_folder, zoo_folder, **settings):
    config = {"inr-classification": {"folder": str(inr_folder), **settings},
              "generalization": {"folder": str(zoo_folder), **settings}}
    return build_auxiliary(config, net, torch.device("cpu"))


@pytest.mark.slow
@pytest.mark.parametrize("net_name", ["ng-gnn", "ng-t"])
def test_readouts_are_invariant_to_hidden_neuron_permutations(net_name, inr_folder, zoo_folder):
    torch.manual_seed(0)
    net = build_net(net_name)
    tasks = _tasks(net, inr_folder, zoo_folder)
    inr = tasks["inr-classification"]
    params = {n: p[:2] for n, p in inr.params.items()}
    permuted = permute_sirens(params, torch.Generator().manual_seed(1))
    assert not torch.equal(permuted["layers.2.weight"], params["layers.2.weight"])
    for b in range(2):
        out = inr.readout(net, {n: p[b] for n, p in params.items()}, inr.graph)
        out_permuted = inr.readout(net, {n: p[b] for n, p in permuted.items()}, inr.graph)
        torch.testing.assert_close(out_permuted, out, rtol=1e-4, atol=1e-5)

    zoo = tasks["generalization"]
    plain = [e for e in load_zoo(zoo_folder, "train") if not e.architecture.get("residual")]
    assert plain, "the tiny zoo should hold a plain CNN"
    entry = plain[-1]
    moved = permute_plain_cnn(entry, torch.Generator().manual_seed(2))
    graph = zoo.graphs(entry.architecture)
    torch.testing.assert_close(zoo.readout(net, moved.params, graph), zoo.readout(net, entry.params, graph),
                               rtol=1e-4, atol=1e-5)
    # the readout does see the weights: another network reads differently
    other = {n: p[2] for n, p in inr.params.items()}
    assert (inr.readout(net, other, inr.graph) - inr.readout(net, {n: p[0] for n, p in params.items()},
                                                            inr.graph)).abs().max() > 1e-4


def test_losses_are_the_weighted_sum_and_reach_the_shared_trunk(inr_folder, zoo_folder):
    torch.manual_seed(0)
    net = build_net("ng-gnn")
    tasks = _tasks(net, inr_folder, zoo_folder, batch=3)
    tasks["inr-classification"].weight, tasks["generalization"].weight = 0.5, 2.0
    total, each = auxiliary_losses(tasks, net, torch.Generator().manual_seed(3))
    assert set(each) == {"inr-classification", "generalization"}
    assert total.item() == pytest.approx(0.5 * each["inr-classification"] + 2.0 * each["generalization"], rel=1e-5)
    total.backward()
    # every trunk parameter but the last layer's edge update (the readout reads node states)
    last = f"layers.{len(net.layers) - 1}.edge_update."
    trunk = {name: p for name, p in net.named_parameters() if name.startswith("layers.")}
    assert [name for name, p in trunk.items() if p.grad is None] == [n for n in trunk if n.startswith(last)]
    assert all(p.grad.abs().sum() > 0 for name, p in trunk.items() if not name.startswith(last))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tasks.parameters())
    # the decoder of the update is not part of the shared trunk
    assert net.edge_dec_out.weight.grad is None


def test_auxiliary_config_is_checked(tmp_path, inr_folder):
    assert check_auxiliary({"generalization": None})["generalization"] == {"weight": 0.1, "batch": 8, "folder": None,
                                                                           "hidden": 64}
    # one order whatever the config's: it decides which task draws its batch first
    assert list(check_auxiliary({"generalization": {}, "inr-classification": {}})) == ["inr-classification",
                                                                                      "generalization"]
    bad = [({"inr-classificaton": {}}, "unknown task 'inr-classificaton'"),
           ({"generalization": {"wieght": 1}}, "unknown setting 'wieght'"),
           ({"generalization": {"weight": 0}}, "weight: must be positive"),
           ({"generalization": {"batch": 2.5}}, "batch: bad value"),
           ({"generalization": {"batch": True}}, "batch: bad value"),
           (["generalization"], "a mapping")]
    for config, message in bad:
        with pytest.raises(ValueError, match=message):
            MetaConfig(auxiliary=config)
    with pytest.raises(ValueError, match="need a graph update network"):
        build_auxiliary({"inr-classification": {"folder": str(inr_folder)}}, build_net("ff"), torch.device("cpu"))
    with pytest.raises(FileNotFoundError, match="l2o-graphs inr make"):
        build_auxiliary({"inr-classification": {"folder": str(tmp_path / "none")}}, build_net("ng-gnn"),
                        torch.device("cpu"))
    with pytest.raises(FileNotFoundError, match="l2o-graphs zoo make"):
        build_auxiliary({"generalization": {"folder": str(tmp_path / "none")}}, build_net("ng-gnn"),
                        torch.device("cpu"))


def _config(inr_folder, zoo_folder, auxiliary=True, **overrides):
    aux = {"inr-classification": {"folder": str(inr_folder), "batch": 2, "weight": 0.5},
           "generalization": {"folder": str(zoo_folder), "batch": 2, "weight": 0.5}} if auxiliary else {}
    base = dict(net="ng-gnn", suite="digits-mlp", outer_steps=6, meta_batch=2, unroll=3, trajectory_length=(6, 9),
                warmup=2, lr=3e-3, checkpoint_every=3, device="cpu", auxiliary=aux)
    return MetaConfig(**{**base, **overrides})


@pytest.mark.slow
def test_meta_training_with_auxiliary_tasks_logs_them_and_resumes_exactly(tmp_path, inr_folder, zoo_folder):
    cfg = _config(inr_folder, zoo_folder)
    straight = MetaTrainer(cfg, tmp_path / "a")
    straight.run(progress=False)
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all(row["aux_inr-classification"] > 0 and row["aux_generalization"] > 0 for row in rows)
    assert plot_run(tmp_path / "a").stat().st_size > 0  # with a panel of auxiliary losses

    MetaTrainer(cfg, tmp_path / "b").run(progress=False, stop_after=4)
    resumed = MetaTrainer(cfg, tmp_path / "b", resume=True)
    assert resumed.step == 3
    resumed.run(progress=False)
    for (name, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), name
    for (name, a), b in zip(straight.auxiliary.state_dict().items(), resumed.auxiliary.state_dict().values()):
        assert torch.equal(a, b), name

    # same tasks, same trajectories, same initial net: the auxiliary losses are the only difference
    plain = MetaTrainer(_config(inr_folder, zoo_folder, auxiliary=False), tmp_path / "c")
    fresh = MetaTrainer(cfg, tmp_path / "d")
    torch.testing.assert_close(plain.net.state_dict(), fresh.net.state_dict())
    assert [(t.spec, t.length) for t in plain.trajectories] == [(t.spec, t.length) for t in fresh.trajectories]
    plain.run(progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(plain.net.parameters(), straight.net.parameters()))
