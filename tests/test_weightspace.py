"""Weight-space models: invariant to hidden-neuron permutations of the networks they read, and
a network's prediction does not depend on the rest of its batch."""
import pytest
import torch
from torch import nn

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.inr import Siren, siren_apply, siren_init
from l2o_graphs.tasks import mlp
from l2o_graphs.weightspace import (FlatMLP, GraphPredictor, NeuralGraphEncoder, ParamNormalizer, StatNN,
                                    mixed_inputs, per_graph_mean)
from permutations import permute_sequential, permute_sirens

SIREN_GRAPH = NeuralGraph.from_module(Siren())


def _models():
    train = siren_init(range(100, 132))
    norm = ParamNormalizer.fit(train)
    torch.manual_seed(0)
    return {"ng-gnn": GraphPredictor(SIREN_GRAPH, norm, 10, net="ng-gnn", layers=2),
            "ng-t": GraphPredictor(SIREN_GRAPH, norm, 10, net="ng-t", layers=2),
            "ng-gnn-fourier": GraphPredictor(SIREN_GRAPH, norm, 10, net="ng-gnn", layers=2, values="fourier"),
            "ng-t-fourier": GraphPredictor(SIREN_GRAPH, norm, 10, net="ng-t", layers=2, values="fourier"),
            "statnn": StatNN.fit(train, 10)}


@pytest.mark.parametrize("name", ["ng-gnn", "ng-t", "ng-gnn-fourier", "ng-t-fourier", "statnn"])
def test_predictions_are_invariant_to_hidden_neuron_permutations(name):
    model = _models()[name].eval()
    params = siren_init(range(4))
    for v in params.values():  # away from the initial scale, so that features are not symmetric
        v.add_(0.3 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1)))
    permuted = permute_sirens(params, torch.Generator().manual_seed(2))
    assert not torch.equal(permuted["layers.2.weight"], params["layers.2.weight"])
    with torch.no_grad():
        out, out_permuted = model(params), model(permuted)
    torch.testing.assert_close(out_permuted, out, rtol=1e-4, atol=1e-5)
    assert out.std(0).max() > 1e-3  # and the networks are told apart


def test_the_flat_mlp_is_not_invariant():
    params = siren_init(range(4))
    torch.manual_seed(0)
    model = FlatMLP(ParamNormalizer.fit(siren_init(range(100, 132))), {k: v.shape[1:] for k, v in params.items()}, 10)
    with torch.no_grad():
        diff = (model(params) - model(permute_sirens(params, torch.Generator().manual_seed(2)))).abs().max()
    assert diff > 1e-3


@pytest.mark.parametrize("name", ["ng-gnn", "ng-t", "ng-gnn-fourier", "statnn"])
def test_a_network_gets_the_same_prediction_alone_and_in_a_batch(name):
    model = _models()[name].eval()
    params = siren_init(range(6))
    with torch.no_grad():
        together = model(params)
        for i in (0, 5):
            alone = model({k: v[i:i + 1] for k, v in params.items()})
            torch.testing.assert_close(alone[0], together[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("net", ["ng-gnn", "ng-t"])
def test_mixed_architecture_batch_equals_each_network_alone(net):
    """No padding and no leakage: every network of a mixed batch is encoded as if alone (the
    reference implementation's attention depended on padding, its LayerNorm mixed graphs)."""
    torch.manual_seed(0)
    models = [mlp([4, 7, 3]), torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(),
                                                  torch.nn.Conv2d(3, 2, 5)), mlp([4, 5, 6, 3])]
    graphs = [NeuralGraph.from_module(m) for m in models]
    params = [{n: p.detach() for n, p in m.named_parameters()} for m in models]
    encoder = NeuralGraphEncoder(net, slots=1, kernel_shape=(5, 5), layers=2).eval()
    with torch.no_grad():
        batch, node_x, edge_x = mixed_inputs(graphs, params, (5, 5), 1)
        together = per_graph_mean(encoder(batch, node_x, edge_x)[0], batch)
        for i in range(3):
            alone_batch, nx, ex = mixed_inputs(graphs[i:i + 1], params[i:i + 1], (5, 5), 1)
            alone = per_graph_mean(encoder(alone_batch, nx, ex)[0], alone_batch)
            torch.testing.assert_close(alone[0], together[i], rtol=1e-5, atol=1e-6)


def test_permuted_mlps_in_a_mixed_batch_encode_alike():
    torch.manual_seed(0)
    model = mlp([4, 7, 5, 3])
    permuted = permute_sequential(model, [torch.randperm(7), torch.randperm(5)])
    graphs = [NeuralGraph.from_module(m) for m in (model, permuted)]
    params = [{n: p.detach() for n, p in m.named_parameters()} for m in (model, permuted)]
    encoder = NeuralGraphEncoder("ng-gnn", layers=3).eval()
    with torch.no_grad():
        batch, node_x, edge_x = mixed_inputs(graphs, params, (1, 1), 1)
        pooled = per_graph_mean(encoder(batch, node_x, edge_x)[0], batch)
    torch.testing.assert_close(pooled[0], pooled[1], rtol=1e-5, atol=1e-6)


def test_the_encoder_rejects_inputs_in_another_frame():
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    graph = NeuralGraph.from_module(conv)
    batch, node_x, edge_x = mixed_inputs([graph], [{n: p.detach() for n, p in conv.named_parameters()}], (3, 3), 1)
    with pytest.raises(ValueError, match=r"reads 1 node slots and a \(1, 1\) kernel frame; got 1 slots and \(3, 3\)"):
        NeuralGraphEncoder("ng-gnn")(batch, node_x, edge_x)
    with pytest.raises(ValueError, match="unknown encoder"):
        NeuralGraphEncoder("gat")


@pytest.mark.parametrize("net", ["ng-gnn", "ng-t"])
def test_editing_heads_are_equivariant(net):
    """Editing a permuted SIREN gives the permuted edit of the original."""
    from l2o_graphs.inr.edit import build_editor

    editor = build_editor(net, siren_init(range(100, 132))).eval()
    with torch.no_grad():
        editor.scale.fill_(1.0)
    params = siren_init(range(3))
    for v in params.values():
        v.add_(0.3 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1)))
    permuted = permute_sirens(params, torch.Generator().manual_seed(2))
    with torch.no_grad():
        delta, delta_of_permuted = editor(params), editor(permuted)
    expected = permute_sirens(delta, torch.Generator().manual_seed(2))  # same permutations, same order
    for name in delta:
        torch.testing.assert_close(delta_of_permuted[name], expected[name], rtol=1e-4, atol=1e-6)
    assert delta["layers.2.weight"].abs().max() > 1e-4


@pytest.mark.slow
def test_an_editor_learns_to_dilate(tmp_path):
    from l2o_graphs.inr.edit import build_editor, dilated, editing_loss, render

    params = siren_init(range(16))
    images = render(params)
    assert torch.equal(dilated(images)[:, 5, 5], images[:, 4:7, 4:7].amax((1, 2)))
    editor = build_editor("ng-gnn", params)
    before = editing_loss(editor, params).item()
    optimizer = torch.optim.Adam(editor.parameters(), lr=3e-3)
    for _ in range(30):
        optimizer.zero_grad()
        loss = editing_loss(editor, params)
        loss.backward()
        optimizer.step()
    assert editing_loss(editor, params).item() < 0.8 * before


def test_siren_activations_follow_the_graph_node_order():
    from l2o_graphs.inr import siren_activations

    params = siren_init(range(2))
    points = torch.rand(5, 2)
    values = siren_activations(params, points)
    assert values.shape == (2, SIREN_GRAPH.num_nodes, 5)
    torch.testing.assert_close(values[:, :2], points.t().expand(2, 2, 5))
    torch.testing.assert_close(values[:, -1], siren_apply(params, points)[..., 0])
    hidden = torch.sin(30 * (params["layers.0.weight"] @ points.t() + params["layers.0.bias"][..., None]))
    torch.testing.assert_close(values[:, 2:34], hidden, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("net", ["ng-gnn", "ng-t"])
def test_classifiers_with_probe_features_stay_invariant(net):
    from l2o_graphs.inr.classify import build_classifier
    from l2o_graphs.inr.dataset import InrSet

    train = siren_init(range(100, 132))
    model = build_classifier(net, InrSet(train, torch.zeros(32).long(), torch.zeros(32), torch.zeros(32).long()),
                             probes=6).eval()
    assert model.probe is not None and model.probe.points.shape == (6, 2)
    params = siren_init(range(4))
    for v in params.values():
        v.add_(0.3 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1)))
    permuted = permute_sirens(params, torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(params)
        torch.testing.assert_close(model(permuted), out, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model({k: v[1:2] for k, v in params.items()})[0], out[1], rtol=1e-5, atol=1e-6)
        model.probe.points.add_(0.5)  # the probe features reach the output
        assert (model(params) - out).abs().max() > 1e-4


def test_encoder_dropout_acts_in_training_mode_only():
    from l2o_graphs.inr.classify import build_classifier
    from l2o_graphs.inr.dataset import InrSet

    train = InrSet(siren_init(range(100, 132)), torch.zeros(32).long(), torch.zeros(32), torch.zeros(32).long())
    plain, dropped = (build_classifier("ng-gnn", train, probes=4, dropout=p) for p in (0.0, 0.5))
    params = siren_init(range(3))
    with torch.no_grad():
        torch.testing.assert_close(dropped.eval()(params), plain.eval()(params))
        dropped.train()
        assert not torch.equal(dropped(params), dropped(params))


def test_training_keeps_the_best_epoch_and_survives_missing_validation():
    from l2o_graphs.weightspace.training import fit_classifier

    params = siren_init(range(24))
    labels = torch.arange(24) % 3
    torch.manual_seed(0)
    model = StatNN.fit(params, 3)
    empty = ({k: v[:0] for k, v in params.items()}, labels[:0])
    result = fit_classifier(model, (params, labels), empty, (params, labels), epochs=3, batch_size=8,
                            progress=False)
    assert result["best_epoch"] == 3  # no validation score: the last epoch, not the first
    assert result["val_acc"] != result["val_acc"]  # NaN, reported as such


@pytest.mark.parametrize("training", [True, False])
def test_predict_loops_keep_the_models_mode(training):
    """Both predict loops (weight-space models, zoo predictors) run in eval mode without autograd
    and leave the model in the mode it had."""
    from l2o_graphs.weightspace.training import batch_outputs

    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5)).train(training)
    seen = []
    out = batch_outputs(model, 10, 4, lambda a, b: (seen.append((model.training, torch.is_grad_enabled())),
                                                    torch.ones(b - a, 3))[1])
    assert out.shape == (10, 4) and seen == [(False, False)] * 3
    assert model.training == training
    torch.testing.assert_close(out, model.eval()(torch.ones(10, 3)).detach())  # no dropout: eval mode


def test_invariant_readout_is_one_readout_for_one_graph_and_for_batches():
    """The single-graph path equals the batched one, and relabelling nodes changes nothing."""
    from l2o_graphs.graph import GraphBatch
    from l2o_graphs.nn.readout import InvariantReadout

    torch.manual_seed(0)
    graphs = [NeuralGraph.from_module(mlp([4, 6, 3])), NeuralGraph.from_module(mlp([5, 2, 7, 3]))]
    batch = GraphBatch(graphs)
    h = torch.randn(batch.num_nodes, 8)
    readout = InvariantReadout(8, 16, 5)
    together = readout(h, batch.node_role, batch)
    first = graphs[0].num_nodes
    alone = torch.stack([readout(h[:first], graphs[0].node_role), readout(h[first:], graphs[1].node_role)])
    torch.testing.assert_close(together, alone)
    order = torch.randperm(first)
    torch.testing.assert_close(readout(h[:first][order], graphs[0].node_role[order]), alone[0])
    assert not torch.allclose(readout(h[:first], graphs[1].node_role[:first]), alone[0])  # roles matter


def test_normalization_statistics_per_tensor_are_permutation_invariant_and_per_element_are_not():
    """Fitted on a set of SIREN weights, per-tensor statistics are unchanged when every network's
    hidden neurons are relabelled (what graph encoders need); per-element ones change (DWSNets'
    kind, for the flat MLP), and graph classifiers refuse them."""
    from l2o_graphs.inr.classify import build_classifier
    from l2o_graphs.inr.dataset import InrSet
    from l2o_graphs.weightspace.models import ParamNormalizer

    gen = torch.Generator().manual_seed(0)
    params = siren_init(list(range(40)))
    shared = siren_init([0] * 40)  # one initialisation: per-element statistics see each neuron's own values
    params = {n: p + 0.1 * s for (n, p), s in zip(params.items(), shared.values())}
    permuted = permute_sirens(params, gen)
    by_tensor, by_tensor_permuted = ParamNormalizer.fit(params), ParamNormalizer.fit(permuted)
    for n in params:
        torch.testing.assert_close(by_tensor.std(n), by_tensor_permuted.std(n))
    by_element, by_element_permuted = ParamNormalizer.fit(params, by="element"), ParamNormalizer.fit(permuted, by="element")
    assert by_element.per_element and not by_tensor.per_element
    assert by_element.std("layers.2.weight").shape == params["layers.2.weight"].shape[1:]
    assert not torch.allclose(by_element.std("layers.2.weight"), by_element_permuted.std("layers.2.weight"))
    normed = by_element(params)["layers.2.weight"]
    torch.testing.assert_close(normed.mean(0), torch.zeros_like(normed[0]), atol=1e-5, rtol=0)
    train = InrSet(params, torch.zeros(40, dtype=torch.long), torch.zeros(40), torch.arange(40))
    assert build_classifier("mlp", train, normalization="element").normalizer.per_element
    with pytest.raises(ValueError, match="per-element normalization"):
        build_classifier("ng-gnn", train, normalization="element")
    with pytest.raises(ValueError, match="unknown normalization"):
        ParamNormalizer.fit(params, by="layer")


def test_fourier_features_are_the_stated_map_and_saved_with_the_model():
    from l2o_graphs.weightspace.encoder import FourierFeatures, value_embedding

    torch.manual_seed(3)
    features = FourierFeatures(2, features=5, scale=3.0)
    x = torch.randn(7, 2)
    reference = torch.empty(7, 10)
    for i in range(7):  # written out for one row and one frequency at a time
        for k in range(5):
            angle = 2 * torch.pi * (x[i, 0] * features.frequencies[0, k] + x[i, 1] * features.frequencies[1, k])
            reference[i, k], reference[i, 5 + k] = torch.cos(angle), torch.sin(angle)
    torch.testing.assert_close(features(x), reference, rtol=1e-5, atol=1e-5)
    assert 1.5 < float(features.frequencies.std()) < 6  # N(0, 3^2), loosely
    assert "frequencies" in features.state_dict() and not list(features.parameters())  # saved, not trained
    fresh = FourierFeatures(2, features=5)
    fresh.load_state_dict(features.state_dict())
    torch.testing.assert_close(fresh(x), features(x))
    with pytest.raises(ValueError, match="unknown value embedding 'sine'"):
        value_embedding("sine", 1, 4)


def test_fourier_values_tell_apart_weights_a_linear_embedding_maps_to_one_direction():
    """Two edges whose standardised weights differ in sign only: a linear embedding gives states
    on one line through the bias (so after a ReLU, only their scale differs); Fourier features
    give states in no such relation."""
    from l2o_graphs.weightspace.encoder import value_embedding

    torch.manual_seed(0)
    linear, fourier = value_embedding("linear", 1, 16), value_embedding("fourier", 1, 16)
    x = torch.tensor([[0.5], [-0.5]])
    with torch.no_grad():
        lin = linear(x) - linear.bias
        four = fourier(x) - fourier[1].bias
    torch.testing.assert_close(lin[0], -lin[1])  # the negative control: mirror images
    assert (four[0] + four[1]).abs().max() > 1e-2


def test_classifier_augmentation_is_applied_to_training_batches_only():
    from l2o_graphs.weightspace.training import fit_classifier

    params = siren_init(range(24))
    labels = torch.arange(24) % 3
    torch.manual_seed(0)
    model = StatNN.fit(params, 3)
    seen = []

    def augment(batch, gen):
        seen.append((model.training, torch.is_grad_enabled(), next(iter(batch.values())).shape[0]))
        return {k: v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in batch.items()}

    fit_classifier(model, (params, labels), (params, labels), (params, labels), epochs=2, batch_size=8,
                   progress=False, augment=augment)
    assert seen == [(True, True, 8)] * 6  # 3 batches per epoch, none from validation or test


def test_interrupted_classifier_training_resumes_exactly(tmp_path):
    """Killed after its second epoch (the log raises) and run again with the same checkpoint, the
    training ends as a straight run does: the same history, weights and test accuracy, with
    dropout (torch's generator), shuffling and augmentation (their generators) restored."""
    from l2o_graphs.weightspace.training import fit_classifier

    params = siren_init(range(40))
    labels = torch.arange(40) % 4
    data = ((params, labels), ({k: v[:12] for k, v in params.items()}, labels[:12]), (params, labels))

    def augment(batch, gen):
        return {k: v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in batch.items()}

    def train(checkpoint=None, log=None, epochs=4, settings=None):
        torch.manual_seed(0)
        model = GraphPredictor(SIREN_GRAPH, ParamNormalizer.fit(params), 4, net="ng-gnn", layers=1, dropout=0.3)
        return model, fit_classifier(model, *data, epochs=epochs, batch_size=8, progress=False, augment=augment,
                                     checkpoint=checkpoint, log=log, settings=settings)

    straight_model, straight = train()

    class Killed(Exception):
        pass

    def kill_at_third(row):
        if row["epoch"] == 3:
            raise Killed

    path = tmp_path / "ng-gnn.pt"
    with pytest.raises(Killed):
        train(path, kill_at_third, settings={"model": "ng-gnn"})
    assert torch.load(path, weights_only=True)["epoch"] == 2
    resumed_model, resumed = train(path, settings={"model": "ng-gnn"})
    assert resumed["history"] == straight["history"]
    assert (resumed["best_epoch"], resumed["test_acc"]) == (straight["best_epoch"], straight["test_acc"])
    for (name, a), b in zip(straight_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    # a finished run's checkpoint is taken as finished: no epoch is trained again
    again_model, again = train(path, settings={"model": "ng-gnn"})
    assert again["history"] == straight["history"]
    # negative controls: a resume that lost torch's generator (dropout) or the batch generators
    # (shuffling, augmentation) would not be the straight run
    with pytest.raises(Killed):
        train(tmp_path / "other.pt", kill_at_third, settings={"model": "ng-gnn"})
    state = torch.load(tmp_path / "other.pt", weights_only=True)
    for key, fresh in (("torch_rng", torch.manual_seed(5).get_state()),
                       ("generator", torch.Generator().manual_seed(5).get_state())):
        torch.save({**state, key: fresh}, tmp_path / f"lost-{key}.pt")
        _, lost = train(tmp_path / f"lost-{key}.pt", settings={"model": "ng-gnn"})
        assert lost["history"][:2] == straight["history"][:2] and lost["history"] != straight["history"], key
    with pytest.raises(ValueError, match=r"other settings \(differs in epochs\)"):
        train(path, epochs=5, settings={"model": "ng-gnn"})
    with pytest.raises(ValueError, match=r"differs in settings"):
        train(path, settings={"model": "ng-t"})
