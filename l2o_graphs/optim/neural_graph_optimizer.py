"""``NeuralGraphOptimizer``: a ``torch.optim.Optimizer`` whose update is proposed by a learned
network that reads the optimizee as a neural graph."""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from l2o_graphs.graph import NeuralGraph, NeuralGraphWarning, block_graph, unwrap_module
from l2o_graphs.nn import NETS, UpdateNet, build_net
from l2o_graphs.nn.base import check_kernels
from l2o_graphs.optim.memory import check_fits
from l2o_graphs.optim.update import OptState, all_finite, init_state, learned_update
from l2o_graphs.optim.weights import PRETRAINED_DIR, load_weights, net_name

DEFAULT = "default"


def _check_hyperparameter(name: str, value: Any, positive: bool = False) -> float:
    """``value`` as a float if it is a finite number >= 0 (> 0 when ``positive``); ValueError otherwise."""
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        raise ValueError(f"invalid {name} {value!r}: must be a finite number {bound}")
    return float(value)


def _fresh_net(name: str, seed: int, config: Optional[Dict[str, Any]]) -> UpdateNet:
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream alone
        torch.manual_seed(seed)
        return build_net(name, **(config or {}))


class NeuralGraphOptimizer(torch.optim.Optimizer):
    """Learned optimizer on the optimizee's neural graph; a drop-in ``torch.optim.Optimizer``.

    Args:
        params: the model itself, or ``model.parameters()`` / param groups as for any optimizer.
        weights: ``"default"`` (the weights shipped in ``l2o_graphs/pretrained/``), a path to a
            weights file, an :class:`~l2o_graphs.nn.UpdateNet` instance (used as it is, not
            copied: meta-validation passes the network being trained), or None for freshly
            initialised meta-parameters (``seed``).
        module: the model the parameters belong to, when ``params`` is not the model; without
            it every tensor becomes its own block graph (with a warning).
        net: ``"ng-gnn"``, ``"ng-t"``, ``"ff"`` or ``"lstm"``.
        lr: multiplier on the learned step (per param group; schedulers change it).
        weight_decay: decoupled weight decay, ``p <- p - lr * lam * weight_decay * p``.
        lam: step scale of the ``paper`` rule ``delta = -lr * d * lam * exp(m * lam)`` (other
            rules, chosen with ``net_config={"update": name}``, are listed in
            :mod:`l2o_graphs.rules`).
        seed: initialisation seed when ``weights=None``.
        net_config: overrides of the net's hyper-parameters when ``weights=None``.
        autocast: run the update network under bfloat16 autocast (features, moments and the
            update itself stay float32; with Triton kernels the edge states are stored in
            bfloat16 and computed in float32). None: on for CUDA parameters when ``compile`` is
            set or the Triton kernels run, off otherwise (eager PyTorch gains nothing from it:
            ``benchmarks/step_cost.py``).
        compile: run the update network through ``torch.compile`` (the first step then pays the
            compilation). For GPUs: on CPUs it has not paid off (the README's measurements).
        kernels: how the network's per-edge work runs: ``"auto"`` (fused Triton kernels on CUDA
            for NG-GNN unless ``compile`` is set, PyTorch otherwise), ``"triton"`` (refused where
            they cannot run, or with ``compile``) or ``"torch"`` (the reference path).
        check_memory: refuse (``MemoryError``, saying how much is needed) a model whose estimated
            peak extra memory exceeds what its device has left, before the neural graph is built
            (:mod:`l2o_graphs.optim.memory`); False skips the estimate.

    ``state[p]`` holds ``momenta`` ``[*p.shape, 5]`` and ``second_moment`` (float32),
    ``updates`` and ``skipped`` counts (updates skipped because the gradient was not finite),
    ``step`` (the global step) and, for recurrent nets, ``net_state``.
    """

    def __init__(self, params: Union[nn.Module, Iterable[Tensor], Iterable[Dict[str, Any]]],
                 weights: Union[str, Path, UpdateNet, None] = DEFAULT, *, module: Optional[nn.Module] = None,
                 net: str = "ng-gnn", lr: float = 1.0, weight_decay: float = 0.0, lam: float = 0.01,
                 seed: int = 0, net_config: Optional[Dict[str, Any]] = None,
                 autocast: Optional[bool] = None, compile: bool = False, check_memory: bool = True,
                 kernels: str = "auto"):
        if isinstance(params, nn.Module):
            if module is not None and module is not params:
                raise ValueError("pass the model either as params or as module, not two different ones")
            module, params = params, params.parameters()
        lr, weight_decay = _check_hyperparameter("lr", lr), _check_hyperparameter("weight_decay", weight_decay)
        lam = _check_hyperparameter("lam", lam, positive=True)
        if check_kernels(kernels) == "triton" and compile:
            raise ValueError("kernels='triton' and compile=True are two ways of running the network: choose one")
        if isinstance(weights, UpdateNet):
            net = net_name(weights)
        if net not in NETS:
            raise ValueError(f"unknown net {net!r}; choose one of {', '.join(NETS)}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))
        self.lam = lam
        self.net = self._make_net(weights, net, seed, net_config)
        self._module = module
        self._check_memory = check_memory
        self._named, self._graph = self._bind(module, warn=True)
        self._graph_on: Dict[torch.device, Optional[NeuralGraph]] = {}
        self.autocast = autocast
        self.compile = compile
        self.kernels = kernels
        self._compiled: Optional[nn.Module] = None
        self._workspace: Dict[str, Tensor] = {}  # feature buffers reused between steps

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _make_net(weights: Union[str, Path, UpdateNet, None], net: str, seed: int,
                  net_config: Optional[Dict[str, Any]]) -> UpdateNet:
        if isinstance(weights, UpdateNet):
            if net_config is not None:
                raise ValueError("net_config only applies to freshly initialised nets (weights=None)")
            return weights
        if weights is None:
            return _fresh_net(net, seed, net_config)
        if net_config is not None:
            raise ValueError("net_config only applies to freshly initialised nets (weights=None)")
        if isinstance(weights, str) and weights == DEFAULT:
            path = PRETRAINED_DIR / f"{net}.pt"
            if not path.is_file():
                raise FileNotFoundError(
                    f"no shipped weights for net {net!r} (looked for {path}). Pass weights='path/to/file.pt' "
                    f"(a file written by l2o_graphs.optim.save_weights or meta-training), or weights=None "
                    f"for a freshly initialised, untrained net.")
            weights = path
        loaded = load_weights(weights, expected_net=net)
        loaded.requires_grad_(False)
        return loaded

    def _bind(self, module: Optional[nn.Module], warn: bool
              ) -> Tuple[List[Tuple[str, Tensor]], Optional[NeuralGraph]]:
        """Names for every parameter of the graph, and the graph (None for graph-free nets)."""
        own = [p for group in self.param_groups for p in group["params"]]
        inner = None if module is None else unwrap_module(module)
        if self.net.uses_graph and self._check_memory and own:  # before the graph is built
            graphed = own if inner is None else list(inner.parameters())
            check_fits([p.shape for p in graphed], own[0].device)
        if inner is not None:
            named = list(inner.named_parameters())
            known = {id(p) for _, p in named}
            foreign = sum(id(p) not in known for p in own)
            if foreign:
                raise ValueError(f"{foreign} of the optimizer's parameters do not belong to the given "
                                 f"module ({type(inner).__name__})")
            graph = NeuralGraph.from_module(inner) if self.net.uses_graph else None
            return named, graph
        named = [(f"param{i}", p) for i, p in enumerate(own)]
        if self.net.uses_graph and warn:
            warnings.warn("NeuralGraphOptimizer got parameters without their module: every tensor becomes a "
                          "block graph of its own and the wiring of the network is not seen; pass module=model "
                          "(or the model itself) to use it.", NeuralGraphWarning, stacklevel=3)
        graph = block_graph([(n, p.shape) for n, p in named]) if self.net.uses_graph else None
        return named, graph

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """As ``torch.optim.Optimizer.add_param_group``. With a module, the new parameters must
        belong to it; without one, each new tensor becomes a block graph of its own. A group's
        ``lr`` and ``weight_decay`` must be finite and >= 0."""
        for key in ("lr", "weight_decay"):
            if key in param_group:
                _check_hyperparameter(key, param_group[key])
        super().add_param_group(param_group)
        if not hasattr(self, "_named"):
            return  # still in __init__: the parameters are bound once all groups are in
        try:
            self._named, self._graph = self._bind(self._module, warn=False)
        except (ValueError, MemoryError):
            self.param_groups.pop()
            raise
        self._graph_on.clear()

    @property
    def graph(self) -> Optional[NeuralGraph]:
        """The optimizee's neural graph (None for nets that do not read it)."""
        return self._graph

    def memory_bytes(self) -> Dict[str, int]:
        """Extra memory the optimizer holds now, in bytes: ``state`` (moments and counters of every
        parameter), ``workspace`` (feature buffers reused between steps) and ``topology`` (the
        neural graph, and its copy on the parameters' device once a step ran there)."""
        state = sum(t.untyped_storage().nbytes() for st in self.state.values() for t in st.values()
                    if isinstance(t, Tensor))
        workspace = sum(t.untyped_storage().nbytes() for t in self._workspace.values())
        graphs = [g for g in (self._graph, *self._graph_on.values()) if g is not None]
        topology = sum(g.nbytes for g in {id(g): g for g in graphs}.values())
        return {"state": state, "workspace": workspace, "topology": topology}

    @property
    def skipped_updates(self) -> int:
        """Parameter-tensor updates skipped so far because their gradient was not finite."""
        return sum(int(s["skipped"]) for s in self.state.values() if "skipped" in s)

    # ------------------------------------------------------------------ state <-> OptState
    def _graph_for(self, device: torch.device) -> Optional[NeuralGraph]:
        if device not in self._graph_on:
            graph = self._graph
            if graph is not None and graph.device != device:
                graph = graph.to(device)  # a copy only for another device: its derived tensors are not kept twice
            self._graph_on[device] = None if graph is None else graph.precompute()
        return self._graph_on[device]

    def _collect_state(self, params: Dict[str, Tensor]) -> OptState:
        """The stored state of every parameter; tensors never updated start from ``init_state``."""
        fresh = [name for name, p in params.items() if "momenta" not in self.state.get(p, {})]
        state = init_state({name: params[name] for name in fresh}, self.net)
        for name, p in params.items():
            st = self.state.get(p, {})
            if "momenta" in st:
                state.momenta[name], state.second_moment[name] = st["momenta"], st["second_moment"]
                state.updates[name], state.skipped[name] = int(st["updates"]), int(st["skipped"])
                state.step = max(state.step, int(st["step"]))
                if "net_state" in st:
                    state.net_state[name] = st["net_state"]
        return state

    def _store_state(self, params: Dict[str, Tensor], owned: Dict[int, Dict[str, Any]], new: OptState) -> None:
        for name, p in params.items():
            if id(p) not in owned or (new.updates[name] == 0 and new.skipped[name] == 0):
                continue  # never updated (no gradient yet, or frozen): keep no state for it
            st = self.state[p]
            st["momenta"], st["second_moment"] = new.momenta[name], new.second_moment[name]
            st["updates"] = torch.tensor(new.updates[name])
            st["skipped"] = torch.tensor(new.skipped[name])
            st["step"] = torch.tensor(float(new.step))
            if name in new.net_state:
                st["net_state"] = new.net_state[name]

    def _runner(self) -> nn.Module:
        """``self.net``, through ``torch.compile`` when asked (recompiled if the net was replaced)."""
        if not self.compile:
            return self.net
        if self._compiled is None or self._compiled._orig_mod is not self.net:
            self._compiled = torch.compile(self.net)
        return self._compiled

    def kernels_in_use(self, device: torch.device) -> str:
        """``"triton"`` or ``"torch"``: how a step on ``device`` runs the network's per-edge work
        (``kernels`` resolved; the compiled network always runs its PyTorch path)."""
        if self.compile:
            return "torch"
        with torch.no_grad():  # as in step()
            return self.net.resolve_kernels(self.kernels, device)

    def autocast_in_use(self, device: torch.device) -> bool:
        """Whether a step on ``device`` runs the network under bfloat16 autocast (``autocast``
        resolved: see the class docstring)."""
        if self.autocast is not None:
            return bool(self.autocast)
        return device.type == "cuda" and (self.compile or self.kernels_in_use(device) == "triton")

    # ------------------------------------------------------------------ the step
    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        """Apply one learned update; returns ``closure()``'s loss when a closure is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        owned = {id(p): group for group in self.param_groups for p in group["params"]}
        params = {name: p for name, p in self._named}
        grads: Dict[str, Optional[Tensor]] = {}
        for name, p in self._named:
            g = p.grad if id(p) in owned and p.requires_grad else None
            if g is not None and g.is_sparse:
                raise RuntimeError("NeuralGraphOptimizer does not support sparse gradients")
            grads[name] = g
        if all(g is None for g in grads.values()):
            return loss
        device = next(iter(params.values())).device
        if any(p.device != device for p in params.values()):
            raise RuntimeError("NeuralGraphOptimizer needs all parameters of the model on one device")
        if next(self.net.parameters()).device != device:
            self.net.to(device)

        state = self._collect_state(params)
        lr = {n: owned[id(p)]["lr"] if id(p) in owned else 0.0 for n, p in params.items()}
        decay = {n: owned[id(p)]["weight_decay"] if id(p) in owned else 0.0 for n, p in params.items()}
        kernels = self.kernels_in_use(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast_in_use(device)):
            new_params, new_state = learned_update(
                self._runner(), self._graph_for(device), {n: p.detach() for n, p in params.items()}, grads,
                state, lr=lr, weight_decay=decay, lam=self.lam, workspace=self._workspace, kernels=kernels)
        for name, value in new_params.items():
            params[name].copy_(value)
        self._store_state(params, owned, new_state)
        return loss

    # ------------------------------------------------------------------ copies and pickles
    def __getstate__(self) -> Dict[str, Any]:
        """torch.optim's pickled state plus the update network, the model binding and ``lam``
        (caches are rebuilt): ``copy.deepcopy`` and ``pickle`` give a working optimizer."""
        state = super().__getstate__()
        own = ("lam", "net", "_module", "_named", "_graph", "autocast", "compile", "kernels", "_check_memory")
        state.update({k: self.__dict__[k] for k in own})
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        self._graph_on, self._compiled, self._workspace = {}, None, {}
        self.__dict__.setdefault("kernels", "auto")  # pickled before the option existed

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        """torch.optim's state dict plus the update network (name, config, weights) and ``lam``."""
        out = super().state_dict()
        out["l2o"] = {"net": net_name(self.net), "config": dict(self.net.config), "lam": self.lam,
                      "weights": {k: v.detach().clone() for k, v in self.net.state_dict().items()}}
        return out

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`; checks everything before changing anything: the state
        dict must come from a ``NeuralGraphOptimizer`` with the same update network, over
        parameters of the same shapes, with finite hyper-parameters, network weights and moments."""
        state_dict = dict(state_dict)
        meta = state_dict.pop("l2o", None)
        if not isinstance(meta, dict) or not {"net", "config", "lam", "weights"} <= set(meta):
            raise ValueError("not a NeuralGraphOptimizer state dict (no 'l2o' entry with the update network): "
                             "the state of another optimizer cannot be loaded into this one")
        if meta["net"] != net_name(self.net) or meta["config"] != self.net.config:
            raise ValueError(f"state dict is for net {meta['net']!r} {meta['config']}, this optimizer "
                             f"runs {net_name(self.net)!r} {self.net.config}")
        own = self.net.state_dict()
        if {k: tuple(v.shape) for k, v in meta["weights"].items()} != {k: tuple(v.shape) for k, v in own.items()}:
            raise ValueError("state dict's net weights do not match the names and shapes of this optimizer's net")
        if not all(all_finite(w) for w in meta["weights"].values() if w.is_floating_point()):
            raise ValueError("state dict's update-network weights hold NaN or inf")
        _check_hyperparameter("lam", meta["lam"], positive=True)
        saved_state = state_dict["state"]
        saved_groups = state_dict.get("param_groups", [])
        for group in saved_groups:
            for key in ("lr", "weight_decay"):
                _check_hyperparameter(f"param group {key}", group.get(key, 0.0))
        saved_ids = [i for group in saved_groups for i in group["params"]]
        current = [p for group in self.param_groups for p in group["params"]]
        for pid, p in zip(saved_ids, current):
            st = saved_state.get(pid)
            if st is None:
                continue
            if "momenta" not in st or "second_moment" not in st:
                raise ValueError(f"state of parameter {pid} has no moments: not a NeuralGraphOptimizer state dict")
            if tuple(st["second_moment"].shape) != tuple(p.shape) or tuple(st["momenta"].shape[:-1]) != tuple(p.shape):
                raise ValueError(f"state of parameter {pid} has shape {tuple(st['second_moment'].shape)}, the "
                                 f"parameter {tuple(p.shape)}: the state dict is of another model")
            if not (all_finite(st["momenta"]) and all_finite(st["second_moment"])):
                raise ValueError(f"state of parameter {pid} holds NaN or inf moments")
        super().load_state_dict(state_dict)  # checks the param groups' sizes before changing anything
        self.net.load_state_dict(meta["weights"])
        self.lam = float(meta["lam"])
        # torch.optim casts floating state to each parameter's dtype (bfloat16 params would lose
        # the float32 moments): put the saved values back, only moved to the parameter's device.
        for pid, p in zip(saved_ids, current):
            if pid in saved_state:
                self.state[p] = {k: v.to(p.device) if isinstance(v, Tensor) else v
                                 for k, v in saved_state[pid].items()}
