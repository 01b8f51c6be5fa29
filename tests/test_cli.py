"""The command line reads its choices and defaults from the library and sets threads in one place."""
import dataclasses

import pytest
import torch

from l2o_graphs import cli
from l2o_graphs.inr.classify import CLASSIFIERS
from l2o_graphs.inr.dataset import InrSetSpec
from l2o_graphs.nn import NETS
from l2o_graphs.zoo.make import ZooSpec


def test_defaults_and_choices_come_from_the_library():
    parser = cli.build_parser()
    zoo = parser.parse_args(["zoo", "make"])
    assert (zoo.count, tuple(zoo.steps), zoo.eval_images, zoo.seed) == (
        ZooSpec.count, ZooSpec.steps, ZooSpec.eval_images, ZooSpec.seed)
    inr = parser.parse_args(["inr", "make", "--dataset", "mnist"])
    counts = next(f for f in dataclasses.fields(InrSetSpec) if f.name == "counts").default_factory()
    assert {"train": inr.train, "val": inr.val, "test": inr.test} == counts
    assert inr.protocol == "default" and (inr.steps, inr.lr, inr.init, inr.stop_psnr) == (None,) * 4  # the protocol's
    assert inr.shard_size == InrSetSpec.shard_size and inr.compile is False and inr.workers == 1
    assert parser.parse_args(["inr", "classify"]).models == list(CLASSIFIERS)
    for net in NETS:
        assert parser.parse_args(["meta-train", "--run-dir", "x", "--net", net]).net == net
    with pytest.raises(SystemExit):
        parser.parse_args(["meta-train", "--run-dir", "x", "--net", "adam"])


def test_threads_are_set_once_for_commands_that_train_and_per_trial_for_sweeps(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(cli, "_cmd_zoo_predict", lambda args: 0)
    assert cli.main(["zoo", "predict", "--threads", "3"]) == 0
    assert calls == [3]
    sweep = cli.build_parser().parse_args(["sweep", "run", "file.yaml", "--threads", "2"])
    assert sweep.trial_threads == 2 and not hasattr(sweep, "threads")


def test_torchrun_process_group_outside_torchrun_sets_up_nothing(monkeypatch):
    """Without torchrun's environment the context manager is a no-op (the distributed path is
    tested through the command in test_meta_distributed.py)."""
    import torch.distributed as dist

    from l2o_graphs.meta import torchrun_process_group

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with torchrun_process_group("cpu") as distributed:
        assert distributed is False and not dist.is_initialized()
    assert not dist.is_initialized()
