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
        for standardize in (None, inr.standardize):  # each SIREN's own RMS, and the set's statistics
            out = inr.readout(net, {n: p[b] for n, p in params.items()}, inr.graph, standardize)
            out_permuted = inr.readout(net, {n: p[b] for n, p in permuted.items()}, inr.graph, standardize)
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


def test_standardised_reading_keeps_how_large_a_tensor_is(inr_folder):
    from l2o_graphs.features import inv_rms
    from l2o_graphs.graph import NeuralGraph
    from l2o_graphs.inr import Siren
    from l2o_graphs.weightspace import ParamNormalizer

    torch.manual_seed(0)
    net = build_net("ng-gnn", element_gain=4.0)
    graph = NeuralGraph.from_module(Siren())
    task = build_auxiliary({"inr-classification": {"folder": str(inr_folder)}}, net, torch.device("cpu"))
    task = task["inr-classification"]
    assert isinstance(task.standardize, ParamNormalizer) and not task.standardize.per_element
    from l2o_graphs.inr import load_inr_set

    reference = ParamNormalizer.fit(load_inr_set(inr_folder, "train").params)  # the train split's statistics
    assert all(torch.equal(a, b) for a, b in zip(task.standardize.state_dict().values(),
                                                 reference.state_dict().values()))
    params = {n: p[0] for n, p in task.params.items()}
    larger = {**params, "layers.2.weight": 2 * params["layers.2.weight"]}
    own_rms = net.embed(params, graph)[0]
    # reference: standardising by each tensor's own RMS is what the optimizer's features do
    by_rms = net.embed(params, graph, lambda ps: {n: p * inv_rms(p, tuple(range(p.dim()))) for n, p in ps.items()})[0]
    torch.testing.assert_close(by_rms, own_rms, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net.embed(larger, graph)[0], own_rms, rtol=1e-5, atol=1e-5)  # scaled away
    standardized = net.embed(params, graph, task.standardize)[0]
    assert (net.embed(larger, graph, task.standardize)[0] - standardized).abs().max() > 1e-2  # kept


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


def test_a_checkpoint_whose_auxiliary_task_read_networks_otherwise_is_refused(tmp_path, inr_folder, zoo_folder):
    """A run begun before the INR task standardised SIRENs by its set's statistics has no such
    buffers in its checkpoint: resuming it names them instead of failing inside load_state_dict."""
    cfg = _config(inr_folder, zoo_folder)
    MetaTrainer(cfg, tmp_path).run(progress=False, stop_after=3)
    MetaTrainer(cfg, tmp_path, resume=True)  # the control: this version's checkpoint resumes
    path = tmp_path / "checkpoint.pt"
    blob = torch.load(path, weights_only=True)
    blob["auxiliary"] = {k: v for k, v in blob["auxiliary"].items() if "standardize" not in k}
    torch.save(blob, path)
    with pytest.raises(ValueError, match=r"older version.*lacks inr-classification\.standardize\."):
        MetaTrainer(cfg, tmp_path, resume=True)


DEC_OUT = ["edge_dec_out", "node_dec_out"]


def test_each_loss_trains_its_own_parameters_clipped_on_its_own(tmp_path, inr_folder, zoo_folder):
    """Truncated backprop with a restricted meta-parameter set: after an outer step the
    meta-parameters hold exactly the clipped meta-gradient, the trunk and the heads exactly the
    clipped auxiliary gradient, computed apart by fresh trainers of the same config."""
    cfg = _config(inr_folder, zoo_folder, meta_parameters=DEC_OUT, auxiliary_parameters=["layers."], clip=0.05)
    trainer = MetaTrainer(cfg, tmp_path / "a")
    metrics = trainer.outer_step()
    meta, aux = MetaTrainer(cfg, tmp_path / "b"), MetaTrainer(cfg, tmp_path / "c")
    for p in meta.trainable:
        p.grad = torch.zeros_like(p)
    meta._tbptt_gradients()
    meta_grads = [p.grad for p in meta.meta_params]
    aux_grads, losses = aux._auxiliary_gradients()
    assert set(losses) == {"inr-classification", "generalization"}
    for grads, key in ((meta_grads, "grad_norm"), (aux_grads, "aux_grad_norm")):
        norm = float(torch.nn.utils.get_total_norm(grads))
        assert metrics[key] == pytest.approx(norm, rel=1e-6) and norm > cfg.clip  # both clipped here
    for p, g in zip(trainer.meta_params, meta_grads):
        torch.testing.assert_close(p.grad, g * (cfg.clip / (metrics["grad_norm"] + 1e-6)), rtol=1e-5, atol=1e-9)
    for p, g in zip(trainer.aux_trainable, aux_grads):
        torch.testing.assert_close(p.grad, g * (cfg.clip / (metrics["aux_grad_norm"] + 1e-6)), rtol=1e-5, atol=1e-9)
    trunk = [p for name, p in trainer.net.named_parameters() if name.startswith("layers.")]
    assert sum(float(p.grad.abs().sum()) for p in trunk) > 0
    # negative control: the meta-loss does reach the trunk, so a leak would have shown above
    leak = MetaTrainer(_config(inr_folder, zoo_folder, auxiliary=False), tmp_path / "d")
    for p in leak.trainable:
        p.grad = torch.zeros_like(p)
    leak._tbptt_gradients()
    assert sum(float(p.grad.abs().sum()) for name, p in leak.net.named_parameters() if name.startswith("layers.")) > 0
    # untouched: what neither loss trains
    fresh = dict(MetaTrainer(cfg, tmp_path / "e").net.named_parameters())
    trainer.run(progress=False, stop_after=2)
    moved = {name for name, p in trainer.net.named_parameters() if not torch.equal(p, fresh[name])}
    assert moved and all(name.startswith(("layers.", "edge_dec_out", "node_dec_out")) for name in moved)


@pytest.mark.slow
def test_pes_trains_the_output_layers_while_auxiliary_tasks_train_the_trunk(tmp_path, inr_folder, zoo_folder):
    pes = dict(estimator="pes", net_config={"update": "adam-scaled"}, meta_parameters=DEC_OUT)
    cfg = _config(inr_folder, zoo_folder, **pes, auxiliary_lr=1e-2)
    fresh = MetaTrainer(cfg, tmp_path / "fresh")
    initial = {name: p.clone() for name, p in fresh.net.named_parameters()}
    heads = [p.clone() for p in fresh.auxiliary.parameters()]
    assert [group["initial_lr"] for group in fresh.outer.param_groups] == [cfg.lr, 1e-2]  # before warm-up
    trained = MetaTrainer(cfg, tmp_path / "a")
    trained.run(progress=False)
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all(row["aux_inr-classification"] > 0 and row["aux_grad_norm"] > 0 for row in rows)
    moved = {name for name, p in trained.net.named_parameters() if not torch.equal(p, initial[name])}
    assert {n for n in moved if n.startswith(tuple(DEC_OUT))} == {f"{m}.{k}" for m in DEC_OUT for k in ("weight", "bias")}
    assert any(n.startswith("layers.") for n in moved)
    assert all(n.startswith(("layers.", *DEC_OUT)) or n in ("node_elements.weight", "node_elements.bias",
               "edge_elements.weight", "edge_elements.bias") or n.startswith(("slot_kind", "role", "activation",
               "position", "edge_kind", "kernel_position")) for n in moved)  # the trunk's encoder, not the decoder
    assert not any(n.startswith(("edge_dec_x", "node_dec_x", "node_dec_state", "node_dec_kind")) for n in moved)
    assert all(not torch.equal(a, b) for a, b in zip(heads, trained.auxiliary.parameters()))

    # the first step's output layers do not depend on the auxiliary tasks (PES's estimate is
    # taken before the trunk moves, and each gradient is clipped on its own); the second's do
    plain_cfg = _config(inr_folder, zoo_folder, auxiliary=False, **pes)
    for steps, equal in ((1, True), (2, False)):
        plain = MetaTrainer(plain_cfg, tmp_path / f"plain{steps}").run(progress=False, stop_after=steps)
        with_aux = MetaTrainer(cfg, tmp_path / f"aux{steps}").run(progress=False, stop_after=steps)
        same = all(torch.equal(getattr(plain, m).weight, getattr(with_aux, m).weight) for m in DEC_OUT)
        assert same == equal, steps

    # resumes exactly, heads and the second parameter group included
    MetaTrainer(cfg, tmp_path / "b").run(progress=False, stop_after=4)
    resumed = MetaTrainer(cfg, tmp_path / "b", resume=True)
    resumed.run(progress=False)
    for (name, a), b in zip(trained.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(trained.auxiliary.parameters(), resumed.auxiliary.parameters()):
        assert torch.equal(a, b)


def test_auxiliary_training_options_are_checked(tmp_path, inr_folder, zoo_folder):
    with pytest.raises(ValueError, match="auxiliary_parameters, auxiliary_lr and auxiliary_warmup set what"):
        MetaConfig(auxiliary_parameters=["layers."])
    with pytest.raises(ValueError, match="auxiliary_parameters, auxiliary_lr and auxiliary_warmup"):
        MetaConfig(auxiliary_lr=1e-3)
    with pytest.raises(ValueError, match="'auxiliary_lr'"):
        _config(inr_folder, zoo_folder, auxiliary_lr=0.0)
    with pytest.raises(ValueError, match="auxiliary_parameters: no parameter of NGGNN starts with 'trunk'"):
        MetaTrainer(_config(inr_folder, zoo_folder, auxiliary_parameters=["trunk"]), tmp_path / "bad")
    assert MetaConfig.from_dict(_config(inr_folder, zoo_folder, auxiliary_parameters=["layers."]).to_dict()
                                ).auxiliary_parameters == ("layers.",)


@pytest.mark.parametrize("net_name", ["ng-gnn", "ng-t"])
def test_element_gain_scales_the_encoders_element_projections_only(tmp_path, net_name):
    from l2o_graphs.optim import load_weights, save_weights

    torch.manual_seed(0)
    plain = build_net(net_name, update="adam-layer")
    torch.manual_seed(0)
    gained = build_net(net_name, update="adam-layer", element_gain=4.0)
    scaled = {"node_elements.weight", "edge_elements.weight"}
    for (name, p), q in zip(plain.named_parameters(), gained.parameters()):
        torch.testing.assert_close(q, 4 * p if name in scaled else p, rtol=0, atol=0, msg=name)
    assert "element_gain" not in plain.config and gained.config["element_gain"] == 4.0
    save_weights(gained, tmp_path / "w.pt")
    assert load_weights(tmp_path / "w.pt").config == gained.config
    for bad in (0.0, -1.0, float("nan"), True, "4"):
        with pytest.raises(ValueError, match="element_gain must be a positive finite number"):
            build_net(net_name, element_gain=bad)


def test_auxiliary_warmup_trains_the_trunk_alone_before_the_first_outer_step(tmp_path, inr_folder, zoo_folder):
    cfg = _config(inr_folder, zoo_folder, meta_parameters=DEC_OUT, auxiliary_warmup=30, auxiliary_lr=1e-2,
                  outer_steps=3, checkpoint_every=3)
    fresh = dict(MetaTrainer(cfg, tmp_path / "fresh").net.named_parameters())
    trainer = MetaTrainer(cfg, tmp_path / "a")
    trainer.run(progress=False, stop_after=0)
    rows = [json.loads(line) for line in (tmp_path / "a" / "auxiliary_warmup.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert all(r["seconds"] > 0 for r in rows)  # its time, which the run's recorded wall time includes
    first, last = (sum(r["aux_inr-classification"] for r in part) / 5 for part in (rows[:5], rows[-5:]))
    assert last < first  # it learns the twelve digits' classes
    moved = {n for n, p in trainer.net.named_parameters() if not torch.equal(p, fresh[n])}
    assert any(n.startswith("layers.") for n in moved) and not any(n.startswith(tuple(DEC_OUT)) for n in moved)
    assert trainer.step == 0
    assert not trainer.outer.state  # the outer optimizer has not stepped
    trainer.save()  # a checkpoint of step 0, as `meta-train --stop-at 0` writes
    import shutil

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    trainer.run(progress=False)  # goes on to the outer steps without warming up again
    resumed = MetaTrainer(cfg, tmp_path / "b", resume=True)
    resumed.run(progress=False)  # resumed at step 0: warmed up already, as its checkpoint says
    for run in ("a", "b"):
        assert len((tmp_path / run / "auxiliary_warmup.jsonl").read_text().splitlines()) == 30
    assert trainer.step == resumed.step == 3
    for (name, p), q in zip(trainer.net.named_parameters(), resumed.net.parameters()):
        assert torch.equal(p, q), name
