"""Triton kernels for NG-GNN's per-edge work, forward only (the optimizer's step).

Three kernels cover every pass over the edge states ``e [D, E]`` (channel-first, one row per
channel), each reading and writing the edge states once:

* :func:`encode_edges`: edge features ``x [F, E, K]`` -> ``e``: the per-element linear map, ReLU,
  mean over the kernel positions that hold a parameter, plus a per-channel constant.
* :func:`dense_pass`: over the dense segments (complete bipartite blocks between two node
  ranges), optionally the edge update ``e <- e + relu(own * e + from_src[src] + from_dst[dst])``
  written in place, then optionally the four sums of the next NG-GNN layer's messages for every
  node: ``sum_in a_fwd[src] * (1 + e)``, ``sum_in e``, ``sum_out a_bwd[dst] * (1 + e)``,
  ``sum_out e``. One pass then serves the update of one layer and the messages of the next.
* :func:`decode_edges`: ``x`` and ``e`` -> ``[2, E, K]`` (direction, magnitude) through the
  per-element decoder ``out = W_o relu(W_x x + b_x + state * e + kpos) + b_o``.

Everything is computed in float32; ``e`` may be stored in bfloat16 (read and written rounded,
accumulated in float32). Node tensors are ``[D, N]`` and may be bfloat16 (autocast). Sums are
accumulated with atomic adds, so their last bits can differ from run to run on a GPU, as with
``index_add_``. Segments that are not dense (residual edges) are left to the PyTorch path.

The kernels run on CUDA tensors, or on CPU tensors through Triton's interpreter when
``TRITON_INTERPRET=1`` is set before this module is first imported (the tests do this).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with torch on Linux
    triton = None

BLOCK_EDGES = 128
DENSE_BLOCKS = (32, 64, 8)
"""Dense pass: rows and columns of a tile, and column tiles per program, on a GPU."""
INTERPRETED_DENSE_BLOCKS = (16, 32, 8)
"""The same under Triton's interpreter, where each program's cost grows with its tile: smaller
tiles keep the tests' small graphs quick and still cross tile and span boundaries."""


def interpreted() -> bool:
    """Whether kernels run through Triton's interpreter (CPU tensors) rather than compiled."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def kernels_available(device: torch.device) -> bool:
    """Whether the kernels can run on tensors of ``device``: Triton is installed and the device is
    a CUDA GPU, or the interpreter is on and the device is the CPU."""
    if triton is None:
        return False
    return device.type == "cuda" or (device.type == "cpu" and interpreted())


def _check_device(*tensors: Tensor) -> None:
    device = tensors[0].device
    if not kernels_available(device):
        raise RuntimeError(
            f"the Triton edge kernels need CUDA tensors (got {device}); on a CPU they run only through Triton's "
            f"interpreter, with TRITON_INTERPRET=1 set before l2o_graphs.nn.edge_kernels is imported")
    if any(t.device != device for t in tensors):
        raise ValueError("the Triton edge kernels need all tensors on one device")


def _check_width(width: int) -> None:
    if width < 1 or width & (width - 1):
        raise ValueError(f"the Triton edge kernels need an edge width that is a power of two, got {width}")


if triton is not None:

    @triton.jit
    def _rounded(x, ptr):
        """``x`` (float32) in the element type of ``ptr``; to bfloat16 rounded to nearest even
        with integer ops, as GPUs round, where Triton's interpreter would truncate."""
        if ptr.dtype.element_ty == tl.bfloat16:
            bits = x.to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            return bits.to(tl.uint16).to(tl.bfloat16, bitcast=True)
        return x.to(ptr.dtype.element_ty)

    # edge counts stay runtime int64 values (not specialised): offsets such as channel * edges
    # pass 2^31 for a few hundred million parameters
    @triton.jit(do_not_specialize=["num_edges", "K"])
    def _encode_kernel(x_ptr, mask_ptr, w_ptr, b_ptr, kpos_ptr, const_ptr, e_ptr, num_edges, K,
                       F: tl.constexpr, D: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK_E: tl.constexpr):
        num_edges = num_edges.to(tl.int64)
        edges = tl.program_id(0).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
        valid = edges < num_edges
        chans = tl.arange(0, D)
        bias = tl.load(b_ptr + chans).to(tl.float32)
        total = tl.zeros([BLOCK_E, D], tl.float32)
        count = tl.zeros([BLOCK_E], tl.float32)
        for k in range(K):
            z = tl.zeros([BLOCK_E, D], tl.float32) + (bias + tl.load(kpos_ptr + chans * K + k).to(tl.float32))[None, :]
            for f in tl.static_range(F):
                xf = tl.load(x_ptr + f * num_edges * K + edges * K + k, mask=valid, other=0.0).to(tl.float32)
                wf = tl.load(w_ptr + chans * F + f).to(tl.float32)
                z += xf[:, None] * wf[None, :]
            z = tl.maximum(z, 0.0)
            if HAS_MASK:
                held = tl.load(mask_ptr + edges * K + k, mask=valid, other=0).to(tl.float32)
                total += z * held[:, None]
                count += held
            else:
                total += z
                count += 1.0
        e = total / tl.maximum(count, 1.0)[:, None] + tl.load(const_ptr + chans).to(tl.float32)[None, :]
        tl.store(e_ptr + chans[None, :] * num_edges + edges[:, None], _rounded(e, e_ptr),
                 mask=valid[:, None])

    @triton.jit(do_not_specialize=["num_edges", "num_tiles", "num_nodes"])
    def _dense_kernel(e_ptr, num_edges, tiles_ptr, num_tiles, segs_ptr, num_nodes,
                      own_ptr, from_src_ptr, from_dst_ptr, a_fwd_ptr, a_bwd_ptr,
                      fwd_ptr, fwd_e_ptr, bwd_ptr, bwd_e_ptr,
                      D: tl.constexpr, UPDATE: tl.constexpr, SUMS: tl.constexpr,
                      BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, SPAN: tl.constexpr):
        # one program: BLOCK_R rows of a segment times up to SPAN column tiles of BLOCK_C; the sums into
        # each row are kept in registers across the span, so atomics per edge are about
        # 2 / (SPAN * BLOCK_C) for the targets and 2 / BLOCK_R for the sources
        num_edges = num_edges.to(tl.int64)
        tile = tl.program_id(0)
        seg = tl.load(tiles_ptr + tile)  # tiles: [3, T] int64 rows (segment, first row, first column)
        r = tl.load(tiles_ptr + num_tiles + tile) + tl.arange(0, BLOCK_R)
        c_first = tl.load(tiles_ptr + 2 * num_tiles + tile)
        span = tl.minimum(SPAN, tl.cdiv(tl.load(segs_ptr + tl.load(tiles_ptr + tile) * 5 + 2) - c_first, BLOCK_C))
        start = tl.load(segs_ptr + seg * 5)  # segs: [S, 5] int64 (start, rows, cols, src_start, dst_start)
        rows = tl.load(segs_ptr + seg * 5 + 1)
        cols = tl.load(segs_ptr + seg * 5 + 2)
        s0 = tl.load(segs_ptr + seg * 5 + 3)
        dst = tl.load(segs_ptr + seg * 5 + 4) + r
        in_rows = r < rows
        for ch in tl.static_range(D):
            own = 0.0
            from_dst = tl.zeros([BLOCK_R], tl.float32)
            a_out = tl.zeros([BLOCK_R], tl.float32)
            if UPDATE:
                own = tl.load(own_ptr + ch).to(tl.float32)
                from_dst = tl.load(from_dst_ptr + ch * num_nodes + dst, mask=in_rows, other=0.0).to(tl.float32)
            if SUMS:
                a_out = tl.load(a_bwd_ptr + ch * num_nodes + dst, mask=in_rows, other=0.0).to(tl.float32)
            row_sum = tl.zeros([BLOCK_R], tl.float32)
            row_sum_e = tl.zeros([BLOCK_R], tl.float32)
            for j in range(0, span):
                c = c_first + j * BLOCK_C + tl.arange(0, BLOCK_C)
                in_cols = c < cols
                inside = in_rows[:, None] & in_cols[None, :]
                ptr = e_ptr + ch * num_edges + start + r[:, None] * cols + c[None, :]
                e = tl.load(ptr, mask=inside, other=0.0).to(tl.float32)
                if UPDATE:
                    from_src = tl.load(from_src_ptr + ch * num_nodes + s0 + c, mask=in_cols, other=0.0).to(tl.float32)
                    stored = _rounded(e + tl.maximum(own * e + from_src[None, :] + from_dst[:, None], 0.0), e_ptr)
                    tl.store(ptr, stored, mask=inside)
                    e = tl.where(inside, stored.to(tl.float32), 0.0)  # the sums read what was stored
                if SUMS:
                    a_in = tl.load(a_fwd_ptr + ch * num_nodes + s0 + c, mask=in_cols, other=0.0).to(tl.float32)
                    one_e = tl.where(inside, 1.0 + e, 0.0)
                    row_sum += tl.sum(one_e * a_in[None, :], 1)
                    row_sum_e += tl.sum(e, 1)
                    tl.atomic_add(bwd_ptr + ch * num_nodes + s0 + c, tl.sum(one_e * a_out[:, None], 0), mask=in_cols)
                    tl.atomic_add(bwd_e_ptr + ch * num_nodes + s0 + c, tl.sum(e, 0), mask=in_cols)
            if SUMS:
                tl.atomic_add(fwd_ptr + ch * num_nodes + dst, row_sum, mask=in_rows)
                tl.atomic_add(fwd_e_ptr + ch * num_nodes + dst, row_sum_e, mask=in_rows)

    @triton.jit(do_not_specialize=["num_edges", "K"])
    def _decode_kernel(x_ptr, e_ptr, wx_ptr, bx_ptr, state_ptr, kpos_ptr, wo_ptr, bo_ptr, out_ptr, num_edges, K,
                       F: tl.constexpr, D: tl.constexpr, BLOCK_E: tl.constexpr):
        num_edges = num_edges.to(tl.int64)
        edges = tl.program_id(0).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
        valid = edges < num_edges
        chans = tl.arange(0, D)
        e = tl.load(e_ptr + chans[None, :] * num_edges + edges[:, None], mask=valid[:, None], other=0.0)
        base = e.to(tl.float32) * tl.load(state_ptr + chans).to(tl.float32)[None, :] \
            + tl.load(bx_ptr + chans).to(tl.float32)[None, :]
        out_dir = tl.load(wo_ptr + chans).to(tl.float32)
        out_mag = tl.load(wo_ptr + D + chans).to(tl.float32)
        bias_dir = tl.load(bo_ptr).to(tl.float32)
        bias_mag = tl.load(bo_ptr + 1).to(tl.float32)
        for k in range(K):
            z = base + tl.load(kpos_ptr + chans * K + k).to(tl.float32)[None, :]
            for f in tl.static_range(F):
                xf = tl.load(x_ptr + f * num_edges * K + edges * K + k, mask=valid, other=0.0).to(tl.float32)
                z += xf[:, None] * tl.load(wx_ptr + chans * F + f).to(tl.float32)[None, :]
            z = tl.maximum(z, 0.0)
            tl.store(out_ptr + edges * K + k, tl.sum(z * out_dir[None, :], 1) + bias_dir, mask=valid)
            tl.store(out_ptr + (num_edges + edges) * K + k, tl.sum(z * out_mag[None, :], 1) + bias_mag, mask=valid)


def encode_edges(x: Tensor, mask: Optional[Tensor], weight: Tensor, bias: Tensor, kpos: Tensor, const: Tensor,
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """Edge states ``[D, E]`` in ``dtype``: ``mean_k relu(weight @ x[:, e, k] + bias + kpos[:, k]) + const``,
    the mean over the positions ``k`` where ``mask [E, K]`` (bool) is set (all of them when None; an
    edge without any gets ``const``).

    ``x``: ``[F, E, K]``; ``weight``: ``[D, F]``; ``bias``, ``const``: ``[D]``; ``kpos``: ``[D, K]``."""
    _check_device(x, weight, bias, kpos, const)
    num_features, num_edges, k = x.shape
    width = weight.shape[0]
    _check_width(width)
    if weight.shape != (width, num_features) or kpos.shape != (width, k):
        raise ValueError(f"encode_edges: weight {tuple(weight.shape)} and kpos {tuple(kpos.shape)} do not fit x "
                         f"{tuple(x.shape)}")
    e = torch.empty(width, num_edges, device=x.device, dtype=dtype)
    if num_edges:
        held = mask.contiguous().view(torch.uint8) if mask is not None else x  # x: unused placeholder
        _encode_kernel[(triton.cdiv(num_edges, BLOCK_EDGES),)](
            x.contiguous(), held, weight.contiguous(), bias.contiguous(), kpos.contiguous(), const.contiguous(), e,
            num_edges, k, F=num_features, D=width, HAS_MASK=mask is not None, BLOCK_E=BLOCK_EDGES)
    return e


@dataclass(frozen=True)
class DenseTiles:
    """The dense segments of a graph cut into tiles, one per program of the dense pass:
    ``segments [S, 5]`` int64 ``(start, rows, cols, src_start, dst_start)``, ``tiles [3, T]`` int64
    ``(segment, first row, first column)``, ``blocks``: rows and columns of a tile and column
    tiles per program (:data:`DENSE_BLOCKS`)."""

    segments: Tensor
    tiles: Tensor
    blocks: Tuple[int, int, int]

    @classmethod
    def of(cls, dense: Sequence[Tuple[int, int, int, int, int]], device: torch.device,
           blocks: Optional[Tuple[int, int, int]] = None) -> "DenseTiles":
        """From ``(start, rows, cols, src_start, dst_start)`` of every dense segment; ``blocks``
        (powers of two) default to :data:`DENSE_BLOCKS` on a GPU, the interpreter's on a CPU."""
        if blocks is None:
            blocks = INTERPRETED_DENSE_BLOCKS if device.type == "cpu" else DENSE_BLOCKS
        block_rows, block_cols, span = blocks
        tiles = []
        for i, (_, rows, cols, _, _) in enumerate(dense):
            r = torch.arange(0, rows, block_rows)
            c = torch.arange(0, cols, block_cols * span)
            grid_r, grid_c = torch.meshgrid(r, c, indexing="ij")
            tiles.append(torch.stack([torch.full_like(grid_r, i), grid_r, grid_c]).reshape(3, -1))
        table = torch.cat(tiles, 1) if tiles else torch.zeros(3, 0, dtype=torch.long)
        segments = torch.tensor(list(dense), dtype=torch.long).reshape(-1, 5)
        return cls(segments.to(device), table.to(device), blocks)

    @property
    def num_tiles(self) -> int:
        return self.tiles.shape[1]


def dense_pass(e: Tensor, tiles: DenseTiles, num_nodes: int,
               update: Optional[Tuple[Tensor, Tensor, Tensor]] = None,
               messages: Optional[Tuple[Tensor, Tensor]] = None) -> Optional[Tuple[Tensor, Tensor, Tensor, Tensor]]:
    """One pass over the dense segments of ``e [D, E]`` (contiguous).

    ``update``: ``(own [D], from_src [D, N], from_dst [D, N])``: ``e`` is updated in place to
    ``e + relu(own * e + from_src[:, src] + from_dst[:, dst])`` (rounded to ``e``'s dtype).
    ``messages``: ``(a_fwd [D, N], a_bwd [D, N])``: returns, from the (updated) ``e``, the
    float32 ``[D, N]`` sums over the dense edges of ``a_fwd[:, src] * (1 + e)`` and of ``e`` into
    each target, and of ``a_bwd[:, dst] * (1 + e)`` and of ``e`` out of each source (zeros for
    nodes without dense edges); None without ``messages``."""
    if not e.is_contiguous():
        raise ValueError("dense_pass needs contiguous edge states")
    width, num_edges = e.shape
    _check_width(width)
    nodes = [t for t in (update[1:] if update else ()) + (messages or ())]
    for t in nodes:
        if t.shape != (width, num_nodes):
            raise ValueError(f"dense_pass: node tensors must be [{width}, {num_nodes}], got {tuple(t.shape)}")
    _check_device(e, tiles.tiles, *nodes)
    sums = tuple(torch.zeros(width, num_nodes, device=e.device) for _ in range(4)) if messages else None
    if tiles.num_tiles and (update or messages):
        own, from_src, from_dst = (t.contiguous() for t in update) if update else (e, e, e)
        a_fwd, a_bwd = (t.contiguous() for t in messages) if messages else (e, e)
        fwd, fwd_e, bwd, bwd_e = sums if sums else (e, e, e, e)  # e: unused placeholders
        _dense_kernel[(tiles.num_tiles,)](
            e, num_edges, tiles.tiles, tiles.num_tiles, tiles.segments, num_nodes, own, from_src, from_dst,
            a_fwd, a_bwd, fwd, fwd_e, bwd, bwd_e, D=width, UPDATE=update is not None, SUMS=messages is not None,
            BLOCK_R=tiles.blocks[0], BLOCK_C=tiles.blocks[1], SPAN=tiles.blocks[2])
    return sums


def decode_edges(x: Tensor, e: Tensor, weight: Tensor, bias: Tensor, state: Tensor, kpos: Tensor,
                 out_weight: Tensor, out_bias: Tensor) -> Tensor:
    """``[2, E, K]`` float32: ``out_weight @ relu(weight @ x[:, e, k] + bias + state * e[:, e] +
    kpos[:, k]) + out_bias`` for every edge ``e`` and kernel position ``k``.

    ``x``: ``[F, E, K]``; ``e``: ``[D, E]``; ``weight``: ``[D, F]``; ``bias``, ``state``: ``[D]``;
    ``kpos``: ``[D, K]``; ``out_weight``: ``[2, D]``; ``out_bias``: ``[2]``."""
    _check_device(x, e, weight, bias, state, kpos, out_weight, out_bias)
    num_features, num_edges, k = x.shape
    width = e.shape[0]
    _check_width(width)
    if weight.shape != (width, num_features) or out_weight.shape != (2, width) or e.shape[1] != num_edges:
        raise ValueError(f"decode_edges: shapes do not fit: x {tuple(x.shape)}, e {tuple(e.shape)}, weight "
                         f"{tuple(weight.shape)}, out_weight {tuple(out_weight.shape)}")
    out = torch.empty(2, num_edges, k, device=x.device, dtype=torch.float32)
    if num_edges:
        _decode_kernel[(triton.cdiv(num_edges, BLOCK_EDGES),)](
            x.contiguous(), e.contiguous(), weight.contiguous(), bias.contiguous(), state.contiguous(),
            kpos.contiguous(), out_weight.contiguous(), out_bias.contiguous(), out, num_edges, k,
            F=num_features, D=width, BLOCK_E=BLOCK_EDGES)
    return out
