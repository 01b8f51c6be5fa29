"""Would batching the particles of a PES outer step pay on this machine?

A PES outer step advances ``2 x pairs`` particles (the shipped recipe: 4 tasks drawn from a suite,
an antithetic pair each), one Python loop per particle. This measures, for the suites ``tiny``
and ``small``, with one thread:

* ``inner_step_ms``: one inner step of every particle as the loop does it now (the optimizee's
  loss and gradients, then :func:`~l2o_graphs.optim.update.learned_update`);
* ``net_separate_ms``: the update network's forward alone, once per particle;
* ``net_union_ms``: the same forwards as one call on the disjoint union of the particles' graphs
  (:meth:`~l2o_graphs.graph.GraphBatch.union`), which gives the same outputs;
* ``projected_speedup``: the inner step if the network's forward ran batched and nothing else
  changed, ``inner / (inner - separate + union)``.

Run: ``OMP_NUM_THREADS=1 python benchmarks/particle_batching.py --threads 1`` (the other core
idle); writes ``benchmarks/results/particle_batching_<cpu>.json``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_run_options, cpu_slug, machine, median_ms, parse_run_args, write_result  # noqa: E402

from l2o_graphs import features as F  # noqa: E402
from l2o_graphs.graph import GraphBatch, NeuralGraph  # noqa: E402
from l2o_graphs.nn import GraphFeatures, build_net  # noqa: E402
from l2o_graphs.optim.update import init_state, learned_update  # noqa: E402
from l2o_graphs.tasks.suites import load_suite  # noqa: E402
from l2o_graphs.tasks.task import Task  # noqa: E402


def measure(suite_name: str, pairs: int, seed: int, repeats: int) -> dict:
    suite = load_suite(suite_name)
    sampler = torch.Generator().manual_seed(seed)
    tasks = [Task(suite.sample(sampler), torch.device("cpu")) for _ in range(pairs)]
    tasks = [t for t in tasks for _ in range(2)]  # the antithetic pair shares its task
    torch.manual_seed(seed)
    net = build_net("ng-gnn", update="adam-layer")
    batch = GraphBatch([NeuralGraph.from_module(t.module) for t in tasks])
    graphs = [g.precompute() for g in batch.graphs]
    union = batch.union().precompute()
    runs = []
    for task, graph in zip(tasks, graphs):
        params, buffers = task.init_params()
        runs.append((task, graph, params, buffers, init_state(params, net), torch.Generator().manual_seed(seed)))

    def inner_steps() -> None:
        for task, graph, params, buffers, state, batches in runs:
            live = {n: p.detach().requires_grad_() for n, p in params.items()}
            loss = task.loss(live, buffers, *task.batch(batches))
            grads = torch.autograd.grad(loss, list(live.values()), allow_unused=True)
            with torch.no_grad():
                learned_update(net, graph, live, dict(zip(live, grads)), state)

    # the network's inputs exactly as the loop passes them (features of a real first step)
    calls = []
    hook = net.register_forward_pre_hook(lambda module, args: calls.append(args))
    inner_steps()
    hook.remove()
    features = [GraphFeatures(f.node_x.clone(), f.edge_x.permute(2, 0, 1).clone().permute(1, 2, 0))
                for f, _, _, _ in calls]
    time = calls[0][1]
    # the union's features: members' nodes and edges one after the other, channel-first like theirs
    together_features = GraphFeatures(torch.cat([f.node_x for f in features]),
                                      torch.cat([f.edge_x.permute(2, 0, 1) for f in features], 1).permute(1, 2, 0))
    with torch.no_grad():
        separate = median_ms(lambda: [net(f, time, g, {}) for f, g in zip(features, graphs)], repeats)
        together = median_ms(lambda: net(together_features, time, union, {}), repeats)
    inner = median_ms(inner_steps, repeats)
    return {"suite": suite_name, "particles": len(runs), "tasks": [t.spec.to_dict() for t in tasks[::2]],
            "parameters": sum(g.num_params for g in graphs), "inner_step_ms": round(inner, 2),
            "net_separate_ms": round(separate, 2), "net_union_ms": round(together, 2),
            "net_speedup": round(separate / together, 2),
            "projected_speedup": round(inner / (inner - separate + together), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", nargs="+", default=["tiny", "small"])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15)
    add_run_options(parser)
    args = parse_run_args(parser)
    info = machine()
    rows = [measure(name, args.pairs, args.seed, args.repeats) for name in args.suites]
    for row in rows:
        print(f"{row['suite']}: {row['particles']} particles, {row['parameters']} parameters; inner step "
              f"{row['inner_step_ms']} ms, network {row['net_separate_ms']} ms looped / {row['net_union_ms']} ms "
              f"as one union (x{row['net_speedup']}); projected inner-step speedup x{row['projected_speedup']}")
    name = f"particle_batching_{cpu_slug(info)}{'_' + args.tag if args.tag else ''}.json"
    command = "python benchmarks/particle_batching.py " + " ".join(sys.argv[1:])
    path = write_result(name, {"benchmark": "particle_batching", "command": command.strip(), "machine": info,
                               "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
