"""A model the optimizer cannot hold is refused before its neural graph is built, saying how much
it needs; the estimate counts graph positions as the graph lays them out."""
import pytest
import torch
from torch import nn

from l2o_graphs import NeuralGraphOptimizer
from l2o_graphs.graph import NeuralGraph, NeuralGraphWarning
from l2o_graphs.optim import memory


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2))


def test_positions_by_hand():
    assert memory.graph_positions([(4, 10), (4,)]) == 44
    # conv 5x3 edges and linear 2x5 edges all carry the 3x3 frame; biases one position each
    assert memory.graph_positions([p.shape for p in _model().parameters()]) == 15 * 9 + 5 + 10 * 9 + 2
    graph = NeuralGraph.from_module(_model())
    assert memory.graph_positions(graph.param_shapes) == graph.num_edges * graph.kernel_size + 7


def test_refused_before_the_graph_is_built(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)

    def never(*args, **kwargs):
        raise AssertionError("the graph was built before the memory check")

    monkeypatch.setattr(NeuralGraph, "from_module", never)
    needed = memory.graph_positions([p.shape for p in _model().parameters()]) * memory.PEAK_BYTES_PER_POSITION
    with pytest.raises(MemoryError, match=rf"needs about {needed / 2 ** 30:.1f} GiB .* only 0.0 GiB is available on cpu"):
        NeuralGraphOptimizer(_model())


def test_check_can_be_skipped_and_fits_when_memory_is_there(monkeypatch):
    model = _model()
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    NeuralGraphOptimizer(model, check_memory=False)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10 ** 9)
    NeuralGraphOptimizer(model)
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)  # unknown: no refusal
    NeuralGraphOptimizer(model)


def test_a_group_that_does_not_fit_is_not_added(monkeypatch):
    with pytest.warns(NeuralGraphWarning):
        opt = NeuralGraphOptimizer([torch.zeros(3, 4, requires_grad=True)])
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    with pytest.raises(MemoryError):
        opt.add_param_group({"params": [torch.zeros(50, 60, requires_grad=True)]})
    assert len(opt.param_groups) == 1 and opt.graph.num_params == 12


def test_this_machine_reports_its_memory():
    available = memory.available_bytes(torch.device("cpu"))
    assert available is None or 0 < available < 1 << 50
