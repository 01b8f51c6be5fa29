"""The CNN zoo (resumable, split by network) and generalization prediction from weights."""
import pytest
import torch

from l2o_graphs.tasks.architectures import build_optimizee
from l2o_graphs.zoo import ZooSpec, build_predictor, fit_predictor, kendall_tau, load_zoo, make_zoo, sample_member
from l2o_graphs.zoo.make import ZooEntry, split_of
from l2o_graphs.zoo.predict import input_scales
from permutations import permute_plain_cnn

TINY = ZooSpec(count=10, steps=(3, 6), checkpoints=(0.0, 1.0), eval_images=64, batch_size=16)
ARCHS = [{"kind": "cnn", "channels": [4, 5], "kernel": 3, "head": "pool", "activation": "tanh", "residual": False},
         {"kind": "cnn", "channels": [3, 6, 6], "kernel": 5, "head": "pool", "activation": "relu", "residual": True},
         {"kind": "cnn", "channels": [5, 4, 4, 7], "kernel": 7, "head": "pool", "activation": "gelu", "residual": False}]


def _entry(arch, seed, index=0):
    torch.manual_seed(seed)
    model = build_optimizee(arch, 1, 28, 10)
    return ZooEntry(index, arch, 0, {n: p.detach() for n, p in model.named_parameters()}, 0.5)


def test_members_are_diverse_and_reproducible():
    members = [sample_member(ZooSpec(), i) for i in range(40)]
    assert sample_member(ZooSpec(), 7) == members[7] and sample_member(ZooSpec(seed=1), 7) != members[7]
    archs = [m["architecture"] for m in members]
    assert {len(a["channels"]) for a in archs} == {2, 3, 4, 5}
    assert {a["kernel"] for a in archs} == {3, 5, 7} and {a["residual"] for a in archs} == {True, False}
    assert len({a["activation"] for a in archs}) >= 5 and {m["dataset"] for m in members} == {"mnist", "fashion_mnist"}
    assert all(4 <= c <= 32 for a in archs for c in a["channels"])


@pytest.mark.slow
def test_a_resumed_zoo_equals_one_made_in_one_go(tmp_path):
    make_zoo(TINY, tmp_path / "whole", progress=False)
    make_zoo(TINY, tmp_path / "resumed", progress=False)
    for i in (1, 8):
        (tmp_path / "resumed" / f"member-{i:05d}.pt").unlink()
    assert make_zoo(TINY, tmp_path / "resumed", progress=False)["trained"] == 2
    for split in ("train", "val", "test"):
        a, b = load_zoo(tmp_path / "whole", split), load_zoo(tmp_path / "resumed", split)
        assert [(e.member, e.step, e.test_acc) for e in a] == [(e.member, e.step, e.test_acc) for e in b]
        assert all(torch.equal(x.params[n], y.params[n]) for x, y in zip(a, b) for n in x.params)
    with pytest.raises(ValueError, match="made with"):
        make_zoo(ZooSpec(count=11, steps=(3, 6)), tmp_path / "whole", progress=False)


def test_splits_go_by_network(tmp_path):
    make_zoo(TINY, tmp_path, progress=False)
    members = {s: {e.member for e in load_zoo(tmp_path, s)} for s in ("train", "val", "test")}
    assert members == {"train": set(range(7)), "val": {7}, "test": {8, 9}}
    assert all(split_of(i) == s for s, ids in members.items() for i in ids)
    train = load_zoo(tmp_path, "train")
    assert len(train) == 7 * 2 and {e.step for e in train if e.member == 0} == {0, sample_member(TINY, 0)["steps"]}
    (tmp_path / "member-00008.pt").unlink()
    with pytest.raises(FileNotFoundError, match="1 test networks missing"):
        load_zoo(tmp_path, "test")


@pytest.mark.parametrize("name", ["ng-gnn", "ng-t", "statnn"])
def test_predictions_are_invariant_to_channel_permutations(name):
    entries = [_entry(ARCHS[0], 1), _entry(ARCHS[2], 2)]
    model = build_predictor(name, [_entry(a, s) for s in range(3) for a in ARCHS]).eval()
    permuted = [permute_plain_cnn(e, torch.Generator().manual_seed(5)) for e in entries]
    assert not torch.equal(permuted[1].params["1.0.weight"], entries[1].params["1.0.weight"])
    with torch.no_grad():
        torch.testing.assert_close(model(permuted), model(entries), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["ng-gnn", "ng-t", "statnn"])
def test_a_mixed_architecture_batch_gives_each_network_its_prediction_alone(name):
    entries = [_entry(a, s) for s, a in enumerate(ARCHS)]
    model = build_predictor(name, [_entry(a, s) for s in range(3) for a in ARCHS]).eval()
    with torch.no_grad():
        together = model(entries)
        alone = torch.cat([model([e]) for e in entries])
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-6)
    assert together.std() > 0


def test_graph_predictors_read_parameters_relative_to_the_training_zoos_scale():
    train = [_entry(a, s) for s in range(3) for a in ARCHS]
    node_scale, edge_scale = input_scales(train)
    biases = torch.cat([p for e in train for p in e.params.values() if p.dim() == 1])
    assert node_scale.item() == pytest.approx(biases.square().mean().sqrt().item(), rel=1e-5)
    assert 0.01 < edge_scale.item() < 1.0  # raw conv weights: order 1 / sqrt(fan-in)

    def scaled(entries, c):
        return [e._replace(params={n: c * p for n, p in e.params.items()}) for e in entries]

    entries = [_entry(a, s) for s, a in enumerate(ARCHS)]
    base = build_predictor("ng-gnn", train).eval()
    big = build_predictor("ng-gnn", scaled(train, 40.0)).eval()
    with torch.no_grad():
        out = base(entries)
        # a zoo 40 times larger, read by a predictor fitted to it, looks the same
        torch.testing.assert_close(big(scaled(entries, 40.0)), out, rtol=1e-4, atol=1e-6)
        assert (base(scaled(entries, 40.0)) - out).abs().max() > 1e-3


def test_kendall_tau_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (40,), generator=gen).float()  # with ties
    y = x + torch.randn(40, generator=gen)
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x.double().numpy(), y.double().numpy()).statistic, abs=1e-12)
    assert kendall_tau(x, x) == pytest.approx(1.0) and kendall_tau(x, -x) == pytest.approx(-1.0)


def test_a_predictor_learns_to_rank(tmp_path):
    """On networks whose 'accuracy' is a simple function of their weights, training raises tau."""
    entries = [_entry(ARCHS[i % 3], i, i) for i in range(30)]
    entries = [e._replace(test_acc=float(torch.sigmoid(e.params["0.0.weight"].mean() * 20))) for e in entries]
    model = build_predictor("statnn", entries[:20])
    result = fit_predictor(model, entries[:20], entries[20:25], entries[25:], epochs=15, batch_size=5, lr=3e-3,
                           progress=False)
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    assert result["val_tau"] > 0.3


def test_command_line_makes_a_zoo_and_predicts(tmp_path, capsys):
    from l2o_graphs.cli import main

    assert main(["zoo", "make", "--count", "10", "--steps", "2", "4", "--eval-images", "64", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    assert "trained 10 networks" in capsys.readouterr().out
    assert main(["zoo", "predict", "--folder", str(tmp_path), "--models", "statnn", "--epochs", "2",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    sizes = [len(load_zoo(tmp_path, s)) for s in ("train", "val", "test")]
    assert f"checkpoints: train {sizes[0]}, val {sizes[1]}, test {sizes[2]}" in out
    assert sizes[0] >= 7 * 2 and "statnn" in out


def test_random_streams_of_members_do_not_overlap():
    from l2o_graphs.zoo.make import member_seed

    seeds = [member_seed(ZooSpec(), i, p) for i in range(50) for p in ("sample", "init", "batches")]
    assert len(set(seeds)) == len(seeds)
    member = sample_member(ZooSpec(), 3)
    assert member["seed"] != member["batch_seed"] and member["batch_seed"] != member_seed(ZooSpec(), 4, "sample")
