"""Fixtures shared by several test modules: tiny INR sets and CNN zoos made by the real code."""
import os

import pytest
import torch

if not torch.cuda.is_available():  # Triton kernels run on the CPU through Triton's interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

from l2o_graphs.data import load_images
from l2o_graphs.inr import InrSetSpec, make_inr_set
from l2o_graphs.zoo import ZooSpec, make_zoo


@pytest.fixture(scope="session")
def inr_folder(tmp_path_factory):
    """12 SIRENs fitted (briefly) to scikit-learn digits standing in for MNIST."""
    folder = tmp_path_factory.mktemp("inrs")
    sources = {}
    for split, size in (("train", 60_000), ("test", 10_000)):
        images, labels = load_images("digits", split)
        index = torch.arange(size) % len(labels)
        sources[split] = images[index], labels[index]
    spec = InrSetSpec("mnist", counts={"train": 12, "val": 0, "test": 0}, steps=10, shard_size=12)
    make_inr_set(spec, folder, progress=False, images=lambda dataset, source: sources[source])
    return folder


@pytest.fixture(scope="session")
def zoo_folder(tmp_path_factory):
    """A zoo of 10 CNNs trained for a few steps."""
    folder = tmp_path_factory.mktemp("zoo")
    make_zoo(ZooSpec(count=10, steps=(3, 6), checkpoints=(0.0, 1.0), eval_images=64, batch_size=16), folder,
             progress=False)
    return folder
