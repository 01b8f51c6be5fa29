"""The Triton edge kernels against PyTorch references written edge by edge, and NG-GNN with the
kernels against its PyTorch path. On a machine without CUDA they run through Triton's
interpreter (``TRITON_INTERPRET=1``, set by conftest.py), at small sizes; the ``cuda`` tests run
them compiled at full size where a GPU is present (``benchmarks/gpu_checks.sh``)."""
import copy
import os
import pickle
import subprocess
import sys

import pytest
import torch
from torch import nn

from l2o_graphs import NeuralGraphOptimizer
from l2o_graphs.features import NUM_FEATURES, NUM_TIME_FEATURES
from l2o_graphs.graph import NeuralGraph
from l2o_graphs.graph.layout import EdgeSegment
from l2o_graphs.nn import NGGNN, build_net
from l2o_graphs.nn import edge_kernels as kernels
from l2o_graphs.optim.update import init_state, learned_update
from l2o_graphs.tasks import ResidualCNN, mlp

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# float32 kernels against the float32 PyTorch path: the same arithmetic in another order
F32_TOLERANCE = dict(rtol=1e-4, atol=1e-5)
# bfloat16 storage against the float32 reference, relative to the largest output: bfloat16 keeps
# 8 significant bits (half an ulp is 0.2 % of a value) and the edge states are rounded once per
# pass, four to five passes; measured 0.5 % on the test networks, as for the PyTorch path under
# bf16 autocast (the compiled GPU setting): benchmarks/kernel_tolerance.py
BF16_MAX_ERROR, BF16_MIN_COSINE = 2e-2, 0.9999


def _reference_encode(x, mask, weight, bias, kpos, const):
    z = (torch.einsum("df,fek->dek", weight, x) + bias[:, None, None] + kpos[:, None, :]).relu()
    held = torch.ones(x.shape[1:]) if mask is None else mask.float()
    return (z * held).sum(2) / held.sum(1).clamp(min=1) + const[:, None]


@pytest.mark.parametrize("num_edges,k,masked", [(1, 1, False), (130, 1, False), (77, 9, True), (256, 25, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_encode_matches_reference(num_edges, k, masked, dtype):
    gen = torch.Generator().manual_seed(num_edges)
    x = torch.randn(NUM_FEATURES, num_edges, k, generator=gen)
    weight, bias, const = torch.randn(8, NUM_FEATURES, generator=gen), torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    kpos = torch.randn(8, k, generator=gen)
    mask = torch.rand(num_edges, k, generator=gen) > 0.4 if masked else None
    if masked:
        mask[0] = False  # an edge without parameters gets the constant alone
    e = kernels.encode_edges(x.to(DEVICE), None if mask is None else mask.to(DEVICE), weight.to(DEVICE),
                             bias.to(DEVICE), kpos.to(DEVICE), const.to(DEVICE), dtype)
    assert e.dtype == dtype and e.shape == (8, num_edges)
    expected = _reference_encode(x, mask, weight, bias, kpos, const)
    if masked:
        assert torch.equal(e[:, 0].cpu(), const.to(dtype))
    tolerance = F32_TOLERANCE if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(e.float().cpu(), expected, **tolerance)


def test_bf16_storage_rounds_to_nearest_even_as_torch_does():
    """bfloat16 edge states are the float32 ones rounded as ``Tensor.to`` rounds (to nearest,
    ties to even), bit for bit; Triton's interpreter alone would truncate."""
    gen = torch.Generator().manual_seed(3)
    args = [torch.randn(NUM_FEATURES, 1000, 1, generator=gen) * 3, None, torch.randn(8, NUM_FEATURES, generator=gen),
            torch.randn(8, generator=gen), torch.zeros(8, 1), torch.zeros(8)]
    args = [a if a is None else a.to(DEVICE) for a in args]
    full, half = kernels.encode_edges(*args), kernels.encode_edges(*args, dtype=torch.bfloat16)
    assert torch.equal(half, full.bfloat16())
    assert not torch.equal(half, (full.view(torch.int32) & ~0xFFFF).view(torch.float32).bfloat16())  # truncated


def _segments():
    """Four dense blocks with sizes that are not multiples of the tile (one wider than a
    program's span of columns under the interpreter), among 180 nodes, after 5 edges that belong
    to no dense block: ``(start, rows, cols, src_start, dst_start)``."""
    return [(5, 23, 70, 0, 70), (5 + 23 * 70, 17, 23, 70, 93), (5 + 23 * 70 + 17 * 23, 1, 150, 30, 179),
            (5 + 23 * 70 + 17 * 23 + 150, 2, 179, 0, 178)]


def _per_edge_index(segments):
    """Source and target of every edge of the dense blocks, edge by edge (the graph module's own
    :meth:`EdgeSegment.endpoints`), and their ids."""
    ends, ids = [], []
    for start, rows, cols, s0, d0 in segments:
        ends.append(EdgeSegment(start, start + rows * cols, (rows, cols, s0, d0)).endpoints())
        ids.append(torch.arange(start, start + rows * cols))
    return torch.cat(ends, 1), torch.cat(ids)


@pytest.mark.parametrize("blocks", [None, kernels.DENSE_BLOCKS])  # the GPU's tiles too, on a wide block
@pytest.mark.parametrize("do_update,do_sums", [(True, False), (False, True), (True, True)])
def test_dense_pass_matches_per_edge_reference(do_update, do_sums, blocks):
    gen = torch.Generator().manual_seed(0)
    segments, num_nodes = _segments(), 180
    if blocks is not None:  # wider than the GPU's span of columns: 512
        segments, num_nodes = [(4, 40, 600, 0, 600), (4 + 40 * 600, 3, 40, 600, 640)], 643
    (src, dst), ids = _per_edge_index(segments)
    num_edges = int(ids.max()) + 3
    e = torch.randn(8, num_edges, generator=gen)
    own, terms, messages = torch.randn(8, generator=gen), torch.randn(2, 8, num_nodes, generator=gen), \
        torch.randn(2, 8, num_nodes, generator=gen)
    tiles = kernels.DenseTiles.of(segments, torch.device(DEVICE), blocks)
    out = e.clone().to(DEVICE)  # updated in place
    sums = kernels.dense_pass(out, tiles, num_nodes, (own.to(DEVICE), *terms.to(DEVICE)) if do_update else None,
                              tuple(messages.to(DEVICE)) if do_sums else None)
    expected = e.clone()
    es = e[:, ids]
    if do_update:
        es = es + (own[:, None] * es + terms[0][:, src] + terms[1][:, dst]).relu()
        expected[:, ids] = es
    torch.testing.assert_close(out.cpu(), expected, **F32_TOLERANCE)
    outside = torch.ones(num_edges, dtype=torch.bool)
    outside[ids] = False
    assert torch.equal(out.cpu()[:, outside], e[:, outside])  # edges of no dense block are left alone
    if not do_sums:
        assert sums is None
        return
    zeros = torch.zeros(8, num_nodes)
    reference = (zeros.index_add(1, dst, messages[0][:, src] * (1 + es)), zeros.index_add(1, dst, es),
                 zeros.index_add(1, src, messages[1][:, dst] * (1 + es)), zeros.index_add(1, src, es))
    for got, want in zip(sums, reference):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)


def test_dense_pass_with_a_tile_missing_fails_the_reference():
    """Negative control: a tile table that misses one tile leaves its edges un-updated."""
    segments, num_nodes = _segments(), 180
    full = kernels.DenseTiles.of(segments, torch.device(DEVICE))
    short = kernels.DenseTiles(full.segments, full.tiles[:, 1:].contiguous(), full.blocks)
    e = torch.randn(8, 5 + 23 * 70 + 17 * 23 + 150 + 2 * 179 + 3, device=DEVICE)
    terms = torch.randn(2, 8, num_nodes, device=DEVICE)
    update = (torch.ones(8, device=DEVICE), terms[0], terms[1])
    a, b = e.clone(), e.clone()
    kernels.dense_pass(a, full, num_nodes, update)
    kernels.dense_pass(b, short, num_nodes, update)
    assert not torch.allclose(a, b)


def test_bf16_edge_states_are_stored_rounded():
    segments, num_nodes = _segments(), 180
    tiles = kernels.DenseTiles.of(segments, torch.device(DEVICE))
    e = torch.randn(8, 5 + 23 * 70 + 17 * 23 + 150 + 2 * 179 + 3, device=DEVICE)
    terms = torch.randn(2, 8, num_nodes, device=DEVICE)
    update = (torch.full((8,), 0.5, device=DEVICE), terms[0], terms[1])
    full, half = e.clone(), e.bfloat16()
    kernels.dense_pass(full, tiles, num_nodes, update)
    kernels.dense_pass(half, tiles, num_nodes, update)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, rtol=1.6e-2, atol=1.6e-2)


@pytest.mark.parametrize("num_edges,k", [(1, 1), (300, 1), (45, 9)])
def test_decode_matches_reference(num_edges, k):
    gen = torch.Generator().manual_seed(k)
    x = torch.randn(NUM_FEATURES, num_edges, k, generator=gen)
    e = torch.randn(8, num_edges, generator=gen)
    weight, bias, state = torch.randn(8, NUM_FEATURES, generator=gen), torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    kpos, out_weight, out_bias = torch.randn(8, k, generator=gen), torch.randn(2, 8, generator=gen), torch.randn(2, generator=gen)
    out = kernels.decode_edges(*(t.to(DEVICE) for t in (x, e, weight, bias, state, kpos, out_weight, out_bias)))
    hidden = (torch.einsum("df,fek->dek", weight, x) + bias[:, None, None] + (state[:, None] * e)[:, :, None]
              + kpos[:, None, :]).relu()
    expected = torch.einsum("od,dek->oek", out_weight, hidden) + out_bias[:, None, None]
    torch.testing.assert_close(out.cpu(), expected, **F32_TOLERANCE)


def test_kernels_refuse_bad_input():
    x = torch.randn(NUM_FEATURES, 4, 1, device=DEVICE)
    with pytest.raises(ValueError, match="power of two"):
        kernels.encode_edges(x, None, torch.randn(6, NUM_FEATURES, device=DEVICE), *torch.randn(3, 6, device=DEVICE)[:1],
                             torch.randn(6, 1, device=DEVICE), torch.randn(6, device=DEVICE))
    with pytest.raises(ValueError, match="do not fit"):
        kernels.encode_edges(x, None, torch.randn(8, 5, device=DEVICE), torch.randn(8, device=DEVICE),
                             torch.randn(8, 1, device=DEVICE), torch.randn(8, device=DEVICE))
    tiles = kernels.DenseTiles.of(_segments(), torch.device(DEVICE))
    with pytest.raises(ValueError, match="contiguous"):
        kernels.dense_pass(torch.randn(3000, 8, device=DEVICE).t(), tiles, 180)
    with pytest.raises(ValueError, match=r"\[8, 180\]"):
        kernels.dense_pass(torch.randn(8, 3000, device=DEVICE), tiles, 180, messages=(torch.randn(8, 179),) * 2)


def test_kernels_refuse_a_cpu_without_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not kernels.kernels_available(torch.device("cpu"))
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        kernels.decode_edges(*(torch.randn(s) for s in ((NUM_FEATURES, 2, 1), (8, 2), (8, NUM_FEATURES), (8,), (8,),
                                                          (8, 1), (2, 8), (2,))))
    net = build_net("ng-gnn")
    with torch.no_grad(), pytest.raises(ValueError, match="Triton cannot run on cpu"):
        net.resolve_kernels("triton", torch.device("cpu"))


AHEAD_OF_TIME = r"""
import itertools, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from l2o_graphs.nn import edge_kernels as K

arch = int(sys.argv[1])
target = GPUTarget("cuda", arch, 32)
f32 = "*fp32"
for e, x in itertools.product(("*fp32", "*bf16"), repeat=2):
    shared = dict(x_ptr=x, e_ptr=e, num_edges="i32", K="i32", F="constexpr", D="constexpr", BLOCK_E="constexpr")
    consts = dict(F=13, D=8, BLOCK_E=K.BLOCK_EDGES)
    kernels = [(K._encode_kernel, dict(shared, mask_ptr="*u8", w_ptr=f32, b_ptr=f32, kpos_ptr=f32, const_ptr=f32,
                                       HAS_MASK="constexpr"), dict(consts, HAS_MASK=True)),
               (K._decode_kernel, dict(shared, wx_ptr=f32, bx_ptr=f32, state_ptr=f32, kpos_ptr=x, wo_ptr=f32,
                                       bo_ptr=f32, out_ptr=f32), consts)]
    nodes = "*bf16" if x == "*bf16" else f32
    for update, sums in ((True, True), (False, True), (True, False)):
        kernels.append((K._dense_kernel, dict(
            e_ptr=e, num_edges="i32", tiles_ptr="*i64", num_tiles="i32", segs_ptr="*i64", num_nodes="i32",
            own_ptr=f32, from_src_ptr=nodes, from_dst_ptr=nodes, a_fwd_ptr=nodes, a_bwd_ptr=nodes, fwd_ptr=f32,
            fwd_e_ptr=f32, bwd_ptr=f32, bwd_e_ptr=f32, D="constexpr", UPDATE="constexpr", SUMS="constexpr",
            BLOCK_R="constexpr", BLOCK_C="constexpr", SPAN="constexpr"),
            dict(D=8, UPDATE=update, SUMS=sums, BLOCK_R=K.DENSE_BLOCKS[0], BLOCK_C=K.DENSE_BLOCKS[1],
                 SPAN=K.DENSE_BLOCKS[2])))
    for fn, signature, constexprs in kernels:
        compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs), target=target)
        assert compiled.asm["cubin"], fn
print("compiled")
"""


@pytest.mark.slow
@pytest.mark.parametrize("arch", [80, 90])
def test_kernels_compile_for_gpus_without_one(arch, tmp_path):
    """Every kernel variant the launchers use goes through Triton's whole compiler down to a cubin
    for an A100 (sm_80) and an H100 (sm_90): what the interpreter cannot check (typing of
    constexpr branches, loop-carried values, int64 offsets), without a GPU."""
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", AHEAD_OF_TIME, str(arch)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-3000:]


# ---------------------------------------------------------------------------------- the network
def _models():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 5, 5), nn.BatchNorm2d(5), nn.Flatten(),
                        nn.LazyLinear(4))
    cnn(torch.randn(2, 3, 12, 12))
    return {"mlp": nn.Sequential(nn.Linear(13, 37), nn.ReLU(), nn.Linear(37, 70), nn.Tanh(), nn.Linear(70, 5)),
            "cnn": cnn, "residual": ResidualCNN(channels=6, blocks=2)}


def _outputs(net: NGGNN, model: nn.Module, kernels_choice: str, autocast: bool = False):
    graph = NeuralGraph.from_module(model).to(DEVICE).precompute()
    gen = torch.Generator().manual_seed(0)
    features = {n: torch.randn(*p.shape, NUM_FEATURES, generator=gen).to(DEVICE) for n, p in model.named_parameters()}
    time = torch.rand(NUM_TIME_FEATURES, generator=gen).to(DEVICE)
    with torch.no_grad(), torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=autocast):
        out, _ = net.to(DEVICE)(features, time, graph, {}, kernels=kernels_choice)
    return torch.cat([out[n].float().flatten() for n in sorted(out)])


def _nets():
    shipped = NeuralGraphOptimizer(nn.Linear(2, 2), check_memory=False).net  # the network the kernels serve
    fresh = build_net("ng-gnn", layers=2)  # the "paper" rule: output layer not zero
    return {"shipped": shipped, "fresh-2-layers": fresh}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mlp", "cnn", "residual"])
@pytest.mark.parametrize("which", ["shipped", "fresh-2-layers"])
def test_ng_gnn_with_kernels_matches_the_torch_path(arch, which):
    model, net = _models()[arch], _nets()[which]
    expected = _outputs(net, model, "torch")
    torch.testing.assert_close(_outputs(net, model, "triton"), expected, **F32_TOLERANCE)
    # negative control: one weight of the second layer's edge update changed must show
    changed = copy.deepcopy(net)
    with torch.no_grad():
        changed.layers[1].edge_update.own.mul_(1.5)
    assert not torch.allclose(_outputs(changed, model, "triton"), expected, **F32_TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mlp", "cnn", "residual"])
def test_bf16_edge_states_stay_within_the_stated_tolerance(arch):
    model, net = _models()[arch], _nets()["shipped"]
    expected = _outputs(net, model, "torch")
    scale = expected.abs().max()
    for choice in ("triton", "torch"):  # the kernels, and the PyTorch path under autocast for comparison
        got = _outputs(net, model, choice, autocast=True)
        assert (got - expected).abs().max() <= BF16_MAX_ERROR * scale
        assert torch.nn.functional.cosine_similarity(got, expected, 0) >= BF16_MIN_COSINE


@pytest.mark.slow
def test_optimizer_steps_agree_with_and_without_kernels():
    model = _models()["mlp"].to(DEVICE)
    twin = copy.deepcopy(model)
    x, y = torch.randn(6, 13, device=DEVICE), torch.randint(0, 5, (6,), device=DEVICE)
    opts = [NeuralGraphOptimizer(m, kernels=k, autocast=False) for m, k in ((model, "torch"), (twin, "triton"))]
    assert opts[1].kernels_in_use(torch.device(DEVICE)) == "triton"
    for _ in range(3):
        for m, opt in zip((model, twin), opts):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6)
    restored = pickle.loads(pickle.dumps(opts[1]))
    assert restored.kernels == "triton"


def test_bf16_step_with_kernels_stays_near_the_float32_step():
    """Kernels under autocast (bf16 features and edge states) against the float32 PyTorch step:
    each tensor's step within the stated tolerance of its own size, and half the workspace."""
    model = _models()["residual"].to(DEVICE)
    x, y = torch.randn(4, 1, 8, 8, device=DEVICE), torch.randint(0, 10, (4,), device=DEVICE)
    nn.functional.cross_entropy(model(x), y).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    steps, workspaces = [], []
    for kernels_choice, autocast in (("torch", False), ("triton", True)):
        trial = copy.deepcopy(model)
        opt = NeuralGraphOptimizer(trial, kernels=kernels_choice, autocast=autocast)
        opt.step()
        steps.append({n: p.detach() - before[n] for n, p in trial.named_parameters()})
        workspaces.append(opt.memory_bytes()["workspace"])
    reference, got = steps
    for name in reference:
        scale = reference[name].abs().max()
        assert (got[name] - reference[name]).abs().max() <= BF16_MAX_ERROR * scale, name
    assert workspaces[1] == workspaces[0] // 2


def test_kernel_choices_and_refusals():
    net, graph_net = build_net("ng-t"), build_net("ng-gnn")
    cpu = torch.device("cpu")
    with torch.no_grad():
        assert graph_net.resolve_kernels("auto", cpu) == "torch"  # auto: CUDA only
        assert graph_net.resolve_kernels("torch", cpu) == "torch"
        with pytest.raises(ValueError, match="no Triton kernels"):
            net.resolve_kernels("triton", cpu)
        with pytest.raises(ValueError, match="no Triton kernels"):
            build_net("ff").resolve_kernels("triton", cpu)
        with pytest.raises(ValueError, match="unknown kernels"):
            graph_net.resolve_kernels("cuda", cpu)
    with pytest.raises(ValueError, match="forward pass only"):
        graph_net.resolve_kernels("triton", torch.device(DEVICE))  # autograd on
    model = mlp([4, 5, 3])
    with pytest.raises(ValueError, match="unknown kernels"):
        NeuralGraphOptimizer(model, kernels="fast")
    with pytest.raises(ValueError, match="choose one"):
        NeuralGraphOptimizer(model, kernels="triton", compile=True)
    assert NeuralGraphOptimizer(model, compile=True).kernels_in_use(torch.device(DEVICE)) == "torch"
    opt = NeuralGraphOptimizer(model, weights=None, net="ng-t", kernels="triton")
    model(torch.randn(2, 4)).sum().backward()
    with pytest.raises(ValueError, match="no Triton kernels"):
        opt.step()


def test_learned_update_under_autograd_refuses_kernels():
    model = mlp([4, 5, 3])
    net = build_net("ng-gnn")
    graph = NeuralGraph.from_module(model)
    params = {n: p.detach() for n, p in model.named_parameters()}
    grads = {n: torch.randn_like(p) for n, p in params.items()}
    with pytest.raises(ValueError, match="forward pass only"):
        learned_update(net, graph, params, grads, init_state(params, net), kernels="triton")


@needs_cuda
@pytest.mark.parametrize("autocast", [False, True])
def test_cuda_kernels_match_the_torch_path_at_size(autocast):
    """Compiled kernels on a GPU, on an MLP of 1.9 M parameters and a CNN with mixed kernels."""
    net = _nets()["shipped"]
    for model in (mlp([784, 1024, 1024, 10]), _models()["cnn"], _models()["residual"]):
        expected = _outputs(net, model, "torch")
        got = _outputs(net, model, "triton", autocast=autocast)
        if autocast:
            assert (got - expected).abs().max() <= BF16_MAX_ERROR * expected.abs().max()
            assert torch.nn.functional.cosine_similarity(got, expected, 0) >= BF16_MIN_COSINE
        else:
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@needs_cuda
def test_cuda_auto_picks_the_kernels_for_ng_gnn():
    model = mlp([8, 16, 4]).cuda()
    assert NeuralGraphOptimizer(model).kernels_in_use(torch.device("cuda")) == "triton"
    assert NeuralGraphOptimizer(model, weights=None, net="ng-t").kernels_in_use(torch.device("cuda")) == "torch"
