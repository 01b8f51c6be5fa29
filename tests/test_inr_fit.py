"""SIRENs, the batched fitter and resumable INR sets (small real images: scikit-learn's digits,
and a few MNIST images)."""
import json

import pytest
import torch

from l2o_graphs.data import load_images
from l2o_graphs.inr import (InrSetSpec, Siren, fit_sirens, image_grid, load_inr_set, make_inr_set, siren_apply,
                            siren_init)


@pytest.fixture(scope="module")
def digits():
    images, labels = load_images("digits", "train")
    return images[:, 0], labels


def test_module_and_batched_function_agree():
    params = siren_init([3, 4])
    coords = image_grid(5, 7)
    batched = siren_apply(params, coords)
    assert batched.shape == (2, 35, 1)
    for i in range(2):
        module = Siren()
        module.load_state_dict({k: v[i] for k, v in params.items()})
        torch.testing.assert_close(module(coords), batched[i], rtol=1e-5, atol=1e-5)


def test_initial_parameters_depend_only_on_their_own_seed():
    alone, batch = siren_init([7]), siren_init([1, 7, 2])
    for name in alone:
        assert torch.equal(alone[name][0], batch[name][1])
    first_layer = siren_init([0])["layers.0.weight"]
    assert first_layer.abs().max() <= 1 / 2  # U(-1/in, 1/in), in = 2


def test_batched_fit_equals_fits_alone(digits):
    images = digits[0][:5]
    seeds = [11, 12, 13, 14, 15]
    batch_params, batch_psnr = fit_sirens(images, seeds, steps=40)
    for i in (0, 3):
        alone_params, alone_psnr = fit_sirens(images[i:i + 1], seeds[i:i + 1], steps=40)
        for name, p in alone_params.items():
            torch.testing.assert_close(batch_params[name][i], p[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batch_psnr[i], alone_psnr[0], rtol=1e-4, atol=1e-3)


def test_moved_inputs_render_the_image_rotated_and_shifted():
    from l2o_graphs.inr.siren import move_inputs

    params = siren_init([5, 6])
    angle = torch.tensor([0.4, -1.1])
    rotation = torch.stack([torch.stack([angle.cos(), -angle.sin()], -1), torch.stack([angle.sin(), angle.cos()], -1)], -2)
    shift = torch.tensor([[0.1, -0.2], [0.05, 0.3]])
    moved = move_inputs(params, rotation, shift)
    coords = image_grid(6, 5)
    for i in range(2):
        single = {k: v[i:i + 1] for k, v in params.items()}
        expected = siren_apply(single, coords @ rotation[i].T + shift[i])
        torch.testing.assert_close(siren_apply({k: v[i:i + 1] for k, v in moved.items()}, coords), expected,
                                   rtol=1e-5, atol=1e-5)
        wrong = siren_apply(single, coords @ rotation[i] + shift[i])  # negative control: the inverse rotation
        assert (wrong - expected).abs().max() > 1e-3
    assert all(torch.equal(moved[k], params[k]) for k in params if not k.startswith("layers.0."))


def test_siren_augmentation_draws_from_its_generator_within_its_ranges():
    from l2o_graphs.inr.classify import SirenAugment

    params = siren_init(range(16))
    augment = SirenAugment(rotation_degrees=30.0, shift=0.2)
    first = augment(params, torch.Generator().manual_seed(0))
    again = augment(params, torch.Generator().manual_seed(0))
    other = augment(params, torch.Generator().manual_seed(1))
    assert all(torch.equal(first[k], again[k]) for k in params)
    assert not torch.equal(first["layers.0.weight"], other["layers.0.weight"])
    # the first layer's weights are rotated: norms kept, angles moved by at most 30 degrees
    w, w_moved = params["layers.0.weight"], first["layers.0.weight"]
    torch.testing.assert_close(w_moved.norm(dim=-1), w.norm(dim=-1), rtol=1e-5, atol=1e-6)
    turn = torch.atan2(w_moved[..., 1], w_moved[..., 0]) - torch.atan2(w[..., 1], w[..., 0])
    turn = torch.remainder(turn + torch.pi, 2 * torch.pi) - torch.pi
    assert float(turn.abs().max()) <= torch.pi / 6 + 1e-5 and float(turn.abs().max()) > 0.05
    assert bool((turn.std(1) < 1e-5).all())  # one angle per SIREN
    still = SirenAugment(0.0, 0.0)(params, torch.Generator().manual_seed(0))
    assert all(torch.allclose(still[k], params[k], atol=1e-7) for k in params)
    with pytest.raises(ValueError, match=">= 0"):
        SirenAugment(-1.0)


def test_chunks_change_the_fit_only_by_rounding(digits):
    images = digits[0][:7]
    seeds = [3, 1, 4, 1, 5, 9, 2]
    for stop in (None, 22.0):  # without a stop, and with one that stops every INR at its own step
        whole_params, whole_psnr = fit_sirens(images, seeds, steps=40, stop_psnr=stop, chunk=7)
        if stop is not None:
            assert bool((whole_psnr < 30).all())  # stopped, where going on reaches about 40 dB
        for chunk in (1, 3):
            params, psnr = fit_sirens(images, seeds, steps=40, stop_psnr=stop, chunk=chunk)
            torch.testing.assert_close(psnr, whole_psnr, rtol=1e-4, atol=1e-3)
            for name, p in params.items():
                torch.testing.assert_close(p, whole_params[name], rtol=1e-4, atol=1e-5)
            again, _ = fit_sirens(images, seeds, steps=40, stop_psnr=stop, chunk=chunk)
            assert all(torch.equal(again[name], p) for name, p in params.items())  # and repeat exactly
    moved, _ = fit_sirens(images, seeds, steps=41, chunk=3)  # negative control: one more step shows
    with pytest.raises(AssertionError):
        torch.testing.assert_close(moved["layers.2.weight"], whole_params["layers.2.weight"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        fit_sirens(images, seeds, steps=1, chunk=0)


def test_written_out_gradients_equal_autograd():
    from l2o_graphs.inr.fit import siren_mse_and_grads

    params = siren_init([2, 5, 8], scheme="dwsnets")
    coords = image_grid(6, 7)
    target = torch.rand(3, 42, 1, generator=torch.Generator().manual_seed(0))
    leaves = {name: p.clone().requires_grad_() for name, p in params.items()}
    reference = (siren_apply(leaves, coords) - target).square().mean((1, 2))
    reference.sum().backward()
    mse, grads = siren_mse_and_grads(params, coords, target)
    torch.testing.assert_close(mse, reference.detach(), rtol=1e-6, atol=0)
    assert set(grads) == set(params)
    for name, p in leaves.items():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-5, atol=1e-7)
    # negative control: another target gives other gradients
    _, other = siren_mse_and_grads(params, coords, target.flip(1))
    assert not torch.allclose(other["layers.0.weight"], grads["layers.0.weight"], rtol=1e-3)


def test_compiled_fit_changes_the_fit_only_by_rounding(digits):
    import shutil

    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile on a CPU needs a C++ compiler")
    images = digits[0][:6]
    seeds = [8, 6, 7, 5, 3, 0]
    eager, eager_psnr = fit_sirens(images, seeds, steps=40, stop_psnr=22.0, chunk=3)
    compiled, compiled_psnr = fit_sirens(images, seeds, steps=40, stop_psnr=22.0, chunk=3, compile=True)
    torch.testing.assert_close(compiled_psnr, eager_psnr, rtol=1e-4, atol=1e-3)
    for name, p in eager.items():
        torch.testing.assert_close(compiled[name], p, rtol=1e-4, atol=1e-5)


def test_fit_reproduces_the_image(digits):
    images = digits[0][:8]
    params, psnr = fit_sirens(images, list(range(8)), steps=200)
    start = -10 * torch.log10((siren_apply(siren_init(list(range(8))), image_grid(8, 8))[..., 0]
                               - images.reshape(8, -1)).square().mean(1))
    assert bool((psnr > 30).all()), psnr
    assert bool((psnr > start + 15).all())
    rendered = siren_apply(params, image_grid(8, 8)).reshape(8, 8, 8)
    torch.testing.assert_close(rendered, images, atol=0.1, rtol=0)


def test_fit_rejects_bad_input(digits):
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        fit_sirens(torch.zeros(64), [0])
    with pytest.raises(ValueError, match="2 seeds for 3 images"):
        fit_sirens(digits[0][:3], [0, 1])


def _digits_as(dataset_images):
    def images(dataset, source):
        return dataset_images[source]
    return images


@pytest.fixture(scope="module")
def sources():
    """Digits (8x8) standing in for MNIST's splits, repeated to MNIST's 60,000 / 10,000 images."""
    out = {}
    for split, size in (("train", 60_000), ("test", 10_000)):
        images, labels = load_images("digits", split)
        index = torch.arange(size) % len(labels)
        out[split] = images[index], labels[index]
    return out


def test_a_resumed_set_equals_one_made_in_one_go(tmp_path, sources):
    spec = InrSetSpec("mnist", counts={"train": 5, "val": 2, "test": 3}, steps=5, shard_size=2)
    whole = make_inr_set(spec, tmp_path / "whole", progress=False, images=_digits_as(sources))
    assert whole["fitted"] == 10
    folder = tmp_path / "resumed"
    make_inr_set(spec, folder, progress=False, images=_digits_as(sources))
    for name in ("train-00001.pt", "train-00002.pt", "test-00001.pt"):  # as if stopped, and mid-write
        (folder / name).unlink()
    (folder / "train-00001.pt.tmp").write_bytes(b"partial")
    again = make_inr_set(spec, folder, progress=False, images=_digits_as(sources))
    assert again["fitted"] == 2 + 1 + 1
    for split, n in spec.counts.items():
        a, b = load_inr_set(tmp_path / "whole", split), load_inr_set(folder, split)
        assert a.label.shape == (n,)
        for name in a.params:
            assert torch.equal(a.params[name], b.params[name])
        assert torch.equal(a.label, b.label) and torch.equal(a.source_index, b.source_index)
    assert make_inr_set(spec, folder, progress=False, images=_digits_as(sources))["fitted"] == 0


CLAIM = """
import sys, time
from pathlib import Path
from l2o_graphs.cache import claim_piece
with claim_piece(Path(sys.argv[1])) as claimed:
    print("claimed" if claimed else "refused", flush=True)
    time.sleep(120)
"""


def test_a_shard_claimed_by_another_process_is_waited_for_and_fitted_when_that_process_dies(tmp_path, sources,
                                                                                          monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time
    from pathlib import Path

    from l2o_graphs.inr import dataset

    monkeypatch.setattr(dataset, "CLAIM_POLL_SECONDS", 0.1)
    spec = InrSetSpec("mnist", counts={"train": 5, "val": 2, "test": 0}, steps=4, shard_size=2)
    whole = tmp_path / "whole"
    make_inr_set(spec, whole, progress=False, images=_digits_as(sources))
    folder = tmp_path / "shared"
    repo = Path(__file__).resolve().parents[1]
    holder = subprocess.Popen([sys.executable, "-c", CLAIM, str(folder / "train-00001.pt")], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        assert holder.stdout.readline().strip() == b"claimed"
        killed = []

        def kill_when_the_rest_is_written():
            others = [folder / name for name in ("train-00000.pt", "train-00002.pt", "val-00000.pt")]
            while not all(p.exists() for p in others):
                time.sleep(0.05)
            time.sleep(0.5)  # the maker now waits on the held shard
            assert not (folder / "train-00001.pt").exists()
            killed.append(time.perf_counter())
            holder.send_signal(signal.SIGKILL)

        killer = threading.Thread(target=kill_when_the_rest_is_written)
        killer.start()
        stats = make_inr_set(spec, folder, progress=False, images=_digits_as(sources))
        returned = time.perf_counter()
        killer.join()
    finally:
        holder.kill()
        holder.wait()
    assert stats["fitted"] == 7 and killed and returned > killed[0]  # it waited, then fitted the shard itself
    for split in spec.counts:
        a, b = load_inr_set(whole, split), load_inr_set(folder, split)
        assert all(torch.equal(a.params[name], b.params[name]) for name in a.params)
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".pt.lock")]


def test_claims_exclude_each_other_and_are_released():
    from l2o_graphs.cache import claim_piece

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        piece = Path(folder) / "piece.pt"
        with claim_piece(piece) as first:
            with claim_piece(piece) as second:  # another open file: refused, as in another process
                assert first and not second
        with claim_piece(piece) as again:
            assert again
        assert list(Path(folder).iterdir()) == []


@pytest.mark.slow
def test_workers_make_the_set_one_process_makes(tmp_path):
    spec = InrSetSpec("mnist", counts={"train": 7, "val": 2, "test": 3}, steps=3, shard_size=2)
    one = make_inr_set(spec, tmp_path / "one", progress=False)
    threads = torch.get_num_threads()
    two = make_inr_set(spec, tmp_path / "two", progress=False, workers=2)
    assert torch.get_num_threads() == threads  # the caller's setting is left as it was
    assert one["fitted"] == two["fitted"] == 12
    for split in spec.counts:
        a, b = load_inr_set(tmp_path / "one", split), load_inr_set(tmp_path / "two", split)
        assert all(torch.equal(a.params[name], b.params[name]) for name in a.params)
        assert torch.equal(a.label, b.label)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        make_inr_set(spec, tmp_path / "one", progress=False, workers=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_set_made_on_the_gpu_matches_the_cpu_one_to_rounding(tmp_path, sources):
    spec = InrSetSpec("mnist", counts={"train": 5, "val": 0, "test": 3}, steps=20, shard_size=4)
    make_inr_set(spec, tmp_path / "cpu", progress=False, images=_digits_as(sources))
    make_inr_set(spec, tmp_path / "gpu", progress=False, images=_digits_as(sources), device="cuda")
    for split in ("train", "test"):
        a, b = load_inr_set(tmp_path / "cpu", split), load_inr_set(tmp_path / "gpu", split)
        for name in a.params:
            assert b.params[name].device.type == "cpu"
            torch.testing.assert_close(b.params[name], a.params[name], rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(b.psnr, a.psnr, rtol=1e-3, atol=1e-2)


def test_splits_follow_the_source_images(tmp_path):
    spec = InrSetSpec("mnist", counts={"train": 2, "val": 1, "test": 1}, steps=2)
    make_inr_set(spec, tmp_path, progress=False)
    train_images, train_labels = load_images("mnist", "train")
    _, test_labels = load_images("mnist", "test")
    val = load_inr_set(tmp_path, "val")
    assert val.source_index.tolist() == [55_000] and val.label.tolist() == [int(train_labels[55_000])]
    assert load_inr_set(tmp_path, "test").label.tolist() == [int(test_labels[0])]
    train = load_inr_set(tmp_path, "train")
    module = Siren()
    module.load_state_dict({k: v[1] for k, v in train.params.items()})
    mse = (module(image_grid(28, 28))[:, 0] - train_images[1, 0].reshape(-1)).square().mean()
    torch.testing.assert_close(-10 * torch.log10(mse), train.psnr[1], rtol=1e-4, atol=1e-3)


def test_a_set_is_not_mixed_with_other_settings_or_read_incomplete(tmp_path, sources):
    spec = InrSetSpec("mnist", counts={"train": 3, "val": 0, "test": 0}, steps=1, shard_size=2)
    make_inr_set(spec, tmp_path, progress=False, images=_digits_as(sources))
    other = InrSetSpec("mnist", counts={"train": 3, "val": 0, "test": 0}, steps=2, shard_size=2)
    with pytest.raises(ValueError, match="made with"):
        make_inr_set(other, tmp_path, progress=False, images=_digits_as(sources))
    (tmp_path / "train-00001.pt").unlink()
    with pytest.raises(FileNotFoundError, match="1 of 2 train shards missing"):
        load_inr_set(tmp_path, "train")
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 1
    with pytest.raises(FileNotFoundError, match="no INR set"):
        load_inr_set(tmp_path / "nothing", "train")


@pytest.mark.parametrize("kwargs, message", [
    (dict(dataset="cifar10"), "not 'cifar10'"),
    (dict(dataset="mnist", counts={"train": 55_001}), "has 55000 images"),
    (dict(dataset="mnist", counts={"valid": 3}), "unknown split 'valid'"),
    (dict(dataset="mnist", shard_size=0), "shard_size"),
])
def test_bad_specs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InrSetSpec(**kwargs)


def test_command_line_makes_and_continues_a_set(tmp_path, capsys):
    from l2o_graphs.cli import main

    argv = ["inr", "make", "--dataset", "fashion_mnist", "--train", "3", "--val", "1", "--test", "2",
            "--steps", "2", "--shard-size", "2", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    assert "fitted 6 INRs" in capsys.readouterr().out
    (tmp_path / "test-00000.pt").unlink()
    assert main(argv + ["--compile"]) == 0  # continued through torch.compile: the same set
    out = capsys.readouterr().out
    assert "fitted 2 INRs" in out and "test       2 INRs" in out


def test_a_siren_reads_as_a_neural_graph_with_sine_activations():
    from l2o_graphs.graph import ACTIVATION_NAMES, NeuralGraph

    graph = NeuralGraph.from_module(Siren())
    assert graph.num_nodes == 2 + 32 + 32 + 1 and graph.num_edges == 2 * 32 + 32 * 32 + 32
    hidden = graph.node_role == 1
    assert {ACTIVATION_NAMES[i] for i in graph.node_activation[hidden].tolist()} == {"sin"}


def test_classifiers_train_on_an_inr_set(tmp_path, sources):
    from l2o_graphs.inr.classify import build_classifier, classify_inrs

    spec = InrSetSpec("mnist", counts={"train": 24, "val": 8, "test": 8}, steps=30, shard_size=24)
    make_inr_set(spec, tmp_path, progress=False, images=_digits_as(sources))
    logged = []
    results = classify_inrs(tmp_path, ["ng-gnn", "statnn"], epochs=4, batch_size=8, progress=False,
                            log=lambda name, row: logged.append((name, row["epoch"])))
    assert logged == [(m, e) for m in ("ng-gnn", "statnn") for e in range(1, 5)]
    for r in results.values():
        assert 0 <= r["test_acc"] <= 1 and 1 <= r["best_epoch"] <= 4
        assert r["history"][-1]["train_loss"] < r["history"][0]["train_loss"]
    with pytest.raises(ValueError, match="unknown classifier"):
        build_classifier("gat", load_inr_set(tmp_path, "train"))
    from l2o_graphs.cli import main

    argv = ["inr", "classify", "--folder", str(tmp_path), "--models", "ng-gnn", "--epochs", "1", "--values",
            "fourier", "--no-progress"]
    assert main(argv + ["--augment"]) == 0
    assert main(argv + ["--augment", "10", "0.1"]) == 0
    assert main(argv + ["--augment", "10", "0.1", "3"]) == 2
    saved = tmp_path / "checkpoints"
    assert main(argv + ["--checkpoints", str(saved)]) == 0
    assert [p.name for p in saved.iterdir()] == ["ng-gnn.pt"]
    assert main(argv + ["--checkpoints", str(saved)]) == 0  # finished: read back, not trained again
    assert main(argv + ["--checkpoints", str(saved), "--augment"]) == 2  # other settings: refused


# ------------------------------------------------------------------ the literature's protocol
def test_dwsnets_initialisation_is_the_one_described():
    """Sine layers ``U(+-sqrt(6/in)/30)`` with zero biases, the first included; the output layer
    as ``nn.Linear``'s; one generator per seed."""
    import math

    from l2o_graphs.inr import SIREN_SIZES

    params = siren_init(list(range(200)), scheme="dwsnets")
    sizes = SIREN_SIZES
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        weight, bias = params[f"layers.{2 * i}.weight"], params[f"layers.{2 * i}.bias"]
        bound = 1 / math.sqrt(a) if i == len(sizes) - 2 else math.sqrt(6 / a) / 30
        assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound  # the whole range is used
        if i < len(sizes) - 2:
            assert torch.equal(bias, torch.zeros_like(bias))
        else:
            assert bias.abs().max() <= 1 / math.sqrt(a) and bias.abs().max() > 0
    assert torch.equal(siren_init([7], scheme="dwsnets")["layers.0.weight"][0], params["layers.0.weight"][7])
    first = siren_init([0])["layers.0.weight"]  # Sitzmann's first layer is another distribution
    assert first.abs().max() > math.sqrt(6 / 2) / 30
    with pytest.raises(ValueError, match="unknown SIREN initialisation"):
        siren_init([0], scheme="xavier")


def test_each_inr_stops_when_it_reaches_the_psnr(digits):
    images = digits[0][:6]
    stopped, psnr = fit_sirens(images, list(range(6)), steps=400, lr=3e-3, stop_psnr=25.0)
    assert (psnr >= 25.0).all() and (psnr < 30.0).all()  # stopped right after reaching it
    _, longer = fit_sirens(images, list(range(6)), steps=400, lr=3e-3)
    assert (longer > psnr + 3).all()  # negative control: without the stop they go on
    alone, psnr_alone = fit_sirens(images[2:3], [2], steps=400, lr=3e-3, stop_psnr=25.0)
    torch.testing.assert_close(psnr_alone, psnr[2:3])  # a SIREN's stop does not depend on the others
    for name in alone:
        torch.testing.assert_close(alone[name][0], stopped[name][2], rtol=1e-4, atol=1e-6)


def test_a_protocol_is_recorded_and_another_is_refused(tmp_path, sources):
    small = dict(counts={"train": 2, "val": 0, "test": 0}, shard_size=2)
    dws = InrSetSpec.of_protocol("dwsnets", "mnist", steps=3, **small)
    assert dws.protocol == "custom" and InrSetSpec.of_protocol("dwsnets", "mnist").protocol == "dwsnets"
    assert InrSetSpec("mnist").protocol == "default"
    make_inr_set(InrSetSpec.of_protocol("dwsnets", "mnist", **small), tmp_path / "dws", progress=False,
                 images=_digits_as(sources))
    config = json.loads((tmp_path / "dws" / "config.json").read_text())
    assert (config["init"], config["stop_psnr"], config["lr"], config["steps"]) == ("dwsnets", 40.0, 5e-4, 1000)
    assert load_inr_set(tmp_path / "dws", "train", protocol="dwsnets").label.shape == (2,)
    with pytest.raises(ValueError, match="'dwsnets' protocol, not 'default'"):
        load_inr_set(tmp_path / "dws", "train", protocol="default")
    with pytest.raises(ValueError, match="made with"):  # one folder, one protocol
        make_inr_set(InrSetSpec("mnist", steps=3, **small), tmp_path / "dws", progress=False,
                     images=_digits_as(sources))
    # a set made before the protocol fields existed (no init / stop_psnr in its config) is a default one
    make_inr_set(InrSetSpec("mnist", steps=2, **small), tmp_path / "old", progress=False, images=_digits_as(sources))
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    assert "init" not in config and "stop_psnr" not in config
    with pytest.raises(ValueError, match="unknown INR protocol"):
        InrSetSpec.of_protocol("nfn", "mnist")


def test_siren_initialisation_draws_in_a_fixed_order():
    """Reference: per layer the weight, then the bias, from one generator per seed (sets made
    earlier stay reproducible)."""
    import math

    gen = torch.Generator().manual_seed(5)
    expected = {}
    for i, (a, b) in enumerate(((2, 32), (32, 32), (32, 1))):
        bound = 1 / a if i == 0 else math.sqrt(6 / a) / 30
        expected[f"layers.{2 * i}.weight"] = (torch.rand(b, a, generator=gen) * 2 - 1) * bound
        expected[f"layers.{2 * i}.bias"] = (torch.rand(b, generator=gen) * 2 - 1) / math.sqrt(a)
    got = siren_init([5])
    for name, value in expected.items():
        assert torch.equal(got[name][0], value), name
