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


def test_dense_layers_keep_their_topology_implicit():
    """A linear or ungrouped conv layer's edges are one dense block of four numbers: the graph of
    a 9 M-parameter MLP holds per-node attributes and no per-edge topology (1 byte per edge once ``edge_mask`` is
    computed), while ``edge_index`` still materialises every edge exactly."""
    from l2o_graphs.graph import NeuralGraph

    model = torch.nn.Sequential(torch.nn.Linear(3000, 3000), torch.nn.ReLU(), torch.nn.Linear(3000, 7))
    graph = NeuralGraph.from_module(model)
    assert all(seg.dense is not None and seg.index is None for seg in graph.edge_segments)
    assert graph.nbytes < 64 * graph.num_nodes  # node attributes only, nothing per edge
    graph.precompute()
    assert graph.nbytes < 1.1 * graph.num_params
    src, dst = graph.edge_index
    assert torch.equal(src[:3001], torch.cat([torch.arange(3000), torch.tensor([0])]))
    assert torch.equal(dst[2999:3001], torch.tensor([3000, 3001]))
    # the last output neuron's incoming edges, from the last hidden neurons
    assert torch.equal(src[-7:], torch.arange(5993, 6000)) and torch.equal(dst[-7:], torch.full((7,), 6006))


def test_grouped_and_residual_edges_keep_explicit_indices():
    """Negative control: a grouped conv's block is not complete, a residual is one-to-one: both
    are stored edge by edge."""
    from l2o_graphs.graph import NeuralGraph
    from l2o_graphs.graph.layout import EDGE_RESIDUAL
    from l2o_graphs.tasks import ResidualCNN

    grouped = NeuralGraph.from_module(torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=2)))
    assert [seg.dense is None for seg in grouped.edge_segments] == [True]
    residual = NeuralGraph.from_module(ResidualCNN(channels=3, blocks=1))
    kinds = {seg.kind: seg for seg in residual.edge_segments}
    assert kinds[EDGE_RESIDUAL].index is not None and kinds[EDGE_RESIDUAL].dense is None
