"""Cost of neural graphs: topology of a ResNet-18-sized CNN, gather + scatter of a 1 M-parameter MLP.

Run: ``.venv/bin/python benchmarks/graph_cost.py`` (or ``make bench``); writes
``benchmarks/results/graph_cost.json``. Targets (issue 2): topology of ResNet-18 under 2 s;
gather + scatter at most 5x one ``torch.optim.Adam`` step on the same model, same process.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from common import machine, median_ms, write_result

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.graph.wiring import clear_graph_cache
from l2o_graphs.tasks import mlp


def topology_seconds(model: torch.nn.Module, repeats: int) -> float:
    """Median time of building the topology from scratch (cache cleared each time)."""
    times = []
    for _ in range(repeats):
        clear_graph_cache()
        start = time.perf_counter()
        NeuralGraph.from_module(model)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def adam_step(model: torch.nn.Module, **options) -> callable:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **options)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    return opt.step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)

    resnet = torchvision.models.resnet18()
    resnet_first_s = topology_seconds(resnet, repeats=1)  # includes torch.fx's first-use costs
    resnet_s = topology_seconds(resnet, repeats=5)
    resnet_graph = NeuralGraph.from_module(resnet)

    model = mlp([784, 1000, 200, 10])
    n_params = sum(p.numel() for p in model.parameters())
    graph = NeuralGraph.from_module(model)
    params = {n: p.detach() for n, p in model.named_parameters()}

    def gather_scatter():
        node_x, edge_x = graph.gather(params)
        return graph.scatter(node_x, edge_x)

    def gather_scatter_features():
        node_x, edge_x = graph.gather(features)
        return graph.scatter(node_x, edge_x)

    features = {n: torch.randn(*p.shape, 8) for n, p in params.items()}
    gs_ms = median_ms(gather_scatter, args.repeats)
    gs_feat_ms = median_ms(gather_scatter_features, max(5, args.repeats // 5))
    adam_ms = median_ms(adam_step(model), args.repeats)
    adam_foreach_ms = median_ms(adam_step(model, foreach=True), args.repeats)

    result = {
        "benchmark": "graph_cost",
        "command": "python benchmarks/graph_cost.py",
        "machine": machine(),
        "resnet18": {"params": sum(p.numel() for p in resnet.parameters()), "nodes": resnet_graph.num_nodes,
                     "edges": resnet_graph.num_edges, "topology_s": round(resnet_s, 4),
                     "topology_first_call_s": round(resnet_first_s, 4),
                     "target_s": 2.0, "meets_target": max(resnet_s, resnet_first_s) < 2.0},
        "mlp_1m": {
            "sizes": [784, 1000, 200, 10], "params": n_params,
            "gather_scatter_ms": round(gs_ms, 4),
            "gather_scatter_8_features_ms": round(gs_feat_ms, 4),
            "adam_step_ms": round(adam_ms, 4), "adam_foreach_step_ms": round(adam_foreach_ms, 4),
            "ratio_to_adam": round(gs_ms / adam_ms, 3),
            "ratio_to_adam_foreach": round(gs_ms / adam_foreach_ms, 3),
            "target_ratio": 5.0, "meets_target": gs_ms <= 5 * min(adam_ms, adam_foreach_ms),
        },
    }
    path = write_result("graph_cost.json", result)
    print(f"ResNet-18 topology: {resnet_s:.3f} s, first call {resnet_first_s:.3f} s ({resnet_graph.num_nodes} nodes, {resnet_graph.num_edges} edges)")
    print(f"1M-param MLP: gather+scatter {gs_ms:.3f} ms, Adam step {adam_ms:.3f} ms "
          f"(foreach {adam_foreach_ms:.3f} ms), ratio {gs_ms / adam_ms:.2f}x / {gs_ms / adam_foreach_ms:.2f}x")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
