"""Reports of a sweep: per task the best setting of every optimizer, its speedup over the tuned
baseline, aggregates over tasks with bootstrap confidence intervals, tables and plots.

Conventions (learned_optimization's, as in :mod:`l2o_graphs.speedup`): the best setting of an
optimizer on a task has the lowest seed-mean final train loss (a setting with a diverged seed
never wins); it is flagged when it sits at the edge of a grid axis of two or more values, where a
wider grid might do better. The speedup of a setting is the step at which the tuned baseline's
curve (minimum over its settings of the seed-mean train-loss curve, running minimum) first
reaches the setting's final curve loss, over the number of steps; None (shown as "> 1") when it
never does. Over tasks, a missing speedup counts as infinite: the median and the interquartile
mean are then "> 1" only when enough tasks are beyond the horizon.

Groups of replicates (the sweep file's ``groups``): per task, each member's final train loss at its
default setting (its best where it has none; seed means) and that over the baseline's default; per
group their mean ± std over members, and over tasks each member's geometric mean ratio. Two groups
are compared by Welch's t-test on the members' log ratios, per task and over tasks (the members
are the samples: a group of meta-training seeds is compared by how its seeds vary, not its trials').

Where the trials ran: per optimizer, how many of its reported trials recorded each machine (CPU
model, cores, torch threads), so that its ms/step is read against the right hardware.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from l2o_graphs.machine import machine_label
from l2o_graphs.speedup import speedup
from l2o_graphs.sweep.spec import SweepError, SweepSpec, Trial, setting_label
from l2o_graphs.sweep.store import SweepStore

BOOTSTRAP_SAMPLES = 2000
NOT_RECORDED = "not recorded (trials older than the machine field)"


def _mean_std(values: Sequence[Optional[float]]) -> Dict[str, Optional[float]]:
    """Mean and sample standard deviation of the finite values (std None for a single value: one
    run says nothing of the spread)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"mean": None, "std": None}
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None}


def _seed_mean(curves: Sequence[Sequence[float]]) -> List[float]:
    return [statistics.mean(points) for points in zip(*curves)] if curves else []


def edge_of_grid(grid: Dict[str, List[Any]], setting: Dict[str, Any]) -> List[str]:
    """The grid axes (of two or more values) on which ``setting`` takes the smallest or largest
    value (numbers by size, other values by their order in the grid)."""
    edges = []
    for key, values in grid.items():
        if len(values) < 2:
            continue
        ordered = sorted(values) if all(isinstance(v, (int, float)) for v in values) else list(values)
        if setting[key] in (ordered[0], ordered[-1]):
            edges.append(key)
    return edges


def first_step_reaching(curve: Sequence[float], steps: Sequence[int], target: float) -> Optional[int]:
    """The first of ``steps`` at which the running minimum of ``curve`` is at most ``target``."""
    best = math.inf
    for step, value in zip(steps, curve):
        if math.isfinite(value):
            best = min(best, value)
        if best <= target:
            return step
    return None


def summarize(spec: SweepSpec, store: SweepStore) -> Dict[str, Any]:
    """Everything the tables and plots show, as plain data (see the module docstring)."""
    records = {r.trial.key: r for r in store.records() if r.status == "done"}
    tasks: Dict[str, Dict[str, Any]] = {}
    eval_steps = None
    machines: Dict[str, Dict[str, int]] = {}
    for task in spec.tasks:
        by_optimizer: Dict[str, Any] = {}
        for opt in spec.optimizers:
            settings = {}
            for setting in opt.settings():
                runs = []
                for seed in spec.seeds:
                    key = Trial(task.name, opt.name, setting, seed).key
                    record = records.get(key)
                    if record is not None and spec.means(record.trial, record.meaning):
                        runs.append(record.result)
                        label = machine_label(record.result["machine"]) if "machine" in record.result else NOT_RECORDED
                        counts = machines.setdefault(opt.name, {})
                        counts[label] = counts.get(label, 0) + 1
                if not runs:
                    continue
                eval_steps = eval_steps or runs[0].get("eval_steps")
                curves = [r["eval_curve"] for r in runs if "eval_curve" in r]
                settings[setting_label(setting)] = {
                    "setting": setting, "seeds": len(runs), "complete": len(runs) == len(spec.seeds),
                    "diverged": sum(bool(r["diverged"]) for r in runs),
                    "train_loss": _mean_std([r["train_loss"] for r in runs]),
                    "test_loss": _mean_std([r["test_loss"] for r in runs]),
                    "test_acc": _mean_std([r["test_acc"] for r in runs]),
                    "step_ms": statistics.mean(r["step_ms"] for r in runs),
                    "optimizer_ms": statistics.mean(r["optimizer_ms"] for r in runs),
                    "eval_curves": curves, "eval_curve": _seed_mean(curves),
                    "minibatch_curve": _seed_mean([r["curve"] for r in runs])}
            if not settings:
                continue

            def score(label: str) -> float:
                s = settings[label]
                loss = s["train_loss"]["mean"]
                return math.inf if loss is None or s["diverged"] or not s["complete"] else loss

            best = min(settings, key=score)
            default = setting_label(opt.default) if opt.default is not None else None
            by_optimizer[opt.name] = {"settings": settings, "best": best,
                                      "edge": edge_of_grid(opt.grid, settings[best]["setting"]),
                                      "default": default if default in settings else None}
        tasks[task.name] = by_optimizer
    baseline = spec.baseline
    for by_optimizer in tasks.values():  # final train loss over the baseline's, tuned and default
        base = by_optimizer.get(baseline)
        if base is None:
            continue
        references = {"tuned_baseline": _final_loss(base, "best"), "baseline_default": _final_loss(base, "default")}
        for entry in by_optimizer.values():
            for which in ("best", "default"):
                if entry[which] is None:
                    continue
                mine = _final_loss(entry, which)
                for name, reference in references.items():
                    if reference is not None:
                        entry[f"{which}_vs_{name}"] = None if mine is None else mine / reference
    for task_name, by_optimizer in tasks.items():
        base = by_optimizer.get(baseline)
        if base is None or not eval_steps:
            continue
        base_curves = {label: s["eval_curves"] for label, s in base["settings"].items() if s["complete"]}
        base_final = base["settings"][base["best"]]["eval_curve"][-1]
        for entry in by_optimizer.values():
            for which in ("best", "default"):
                label = entry[which]
                if label is None:
                    continue
                s = entry["settings"][label]
                final = s["eval_curve"][-1] if s["eval_curve"] else math.nan
                entry[f"{which}_speedup"] = speedup(base_curves, eval_steps, final) if math.isfinite(final) else None
            s = entry["settings"][entry["best"]]
            reached = first_step_reaching(s["eval_curve"], eval_steps, base_final)
            entry["steps_to_baseline"] = reached
            entry["seconds_to_baseline"] = None if reached is None else reached * s["step_ms"] / 1e3
    aggregates = {}
    if baseline is not None:
        for opt in spec.optimizers:
            if opt.name == baseline:
                continue
            for which in ("best", "default"):
                values = [t[opt.name].get(f"{which}_speedup", math.nan) for t in tasks.values() if opt.name in t
                          and t[opt.name].get(which) is not None and f"{which}_speedup" in t[opt.name]]
                if values:
                    aggregates[f"{opt.name} ({'tuned' if which == 'best' else 'default'})"] = speedup_aggregates(
                        [math.inf if v is None else v for v in values])
    summary = {"name": spec.name, "steps": spec.steps, "seeds": list(spec.seeds), "baseline": baseline,
               "eval_steps": eval_steps, "tasks": tasks, "aggregates": aggregates, "machines": machines}
    if spec.groups:
        summary["groups"] = group_summary(tasks, spec.groups)
        if len(spec.groups) == 2:
            summary["group_comparison"] = compare_groups(summary["groups"], *spec.groups)
    return summary


# ------------------------------------------------------------------------------------ replicates
def group_summary(tasks: Dict[str, Dict[str, Any]], groups: Dict[str, Sequence[str]]) -> Dict[str, Any]:
    """Per group and task, the members' final train loss at their default setting (best where an
    optimizer has none), its ratio to the baseline's default, test accuracy, and their mean ± std
    over members; over tasks, each member's geometric mean ratio (over the tasks every member of
    the group finished, all ratios finite) and its mean ± std. A diverged member's ratio is None."""
    out = {}
    for name, members in groups.items():
        per_task = {}
        for task, by_optimizer in tasks.items():
            present = [m for m in members if m in by_optimizer]
            if not present:
                continue
            rows = {}
            for member in present:
                entry = by_optimizer[member]
                which = "default" if entry["default"] is not None else "best"
                setting = entry["settings"][entry[which]]
                rows[member] = {"setting": entry[which], "train_loss": setting["train_loss"]["mean"],
                                "test_acc": setting["test_acc"]["mean"],
                                "vs_baseline_default": entry.get(f"{which}_vs_baseline_default")}
            per_task[task] = {"members": rows, **{key: _mean_std([r[key] for r in rows.values()])
                                                  for key in ("train_loss", "test_acc", "vs_baseline_default")},
                              "complete": len(present) == len(members)}
        shared = [t for t, v in per_task.items() if v["complete"]
                  and all(r["vs_baseline_default"] is not None for r in v["members"].values())]
        geometric = {m: math.exp(statistics.mean(math.log(per_task[t]["members"][m]["vs_baseline_default"])
                                                 for t in shared)) for m in members} if shared else {}
        out[name] = {"members": list(members), "tasks": per_task, "overall_tasks": shared,
                     "overall": {"members": geometric, "vs_baseline_default": _mean_std(list(geometric.values()))}}
    return out


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), by Lentz's continued fraction (its symmetry taken where that converges faster)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must lie in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    if x > (a + 1) / (a + b + 2):
        return 1.0 - regularized_incomplete_beta(1.0 - x, b, a)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    value = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            value *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * value


def _untested(difference: Optional[float]) -> Dict[str, Optional[float]]:
    return {"difference": difference, "t": None, "df": None, "p": None}


def welch_test(first: Sequence[float], second: Sequence[float]) -> Dict[str, Optional[float]]:
    """Welch's two-sample t-test: the difference of means (first - second), t, the
    Welch-Satterthwaite degrees of freedom and the two-sided p-value (None where a sample has
    fewer than two values or neither varies)."""
    n1, n2 = len(first), len(second)
    difference = statistics.mean(first) - statistics.mean(second) if n1 and n2 else None
    if n1 < 2 or n2 < 2:
        return _untested(difference)
    v1, v2 = statistics.variance(first) / n1, statistics.variance(second) / n2
    if v1 + v2 == 0:
        return _untested(difference)
    t = difference / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
    return {"difference": difference, "t": t, "df": df, "p": regularized_incomplete_beta(df / (df + t * t), df / 2, 0.5)}


def compare_groups(groups: Dict[str, Any], first: str, second: str, level: float = 0.05) -> Dict[str, Any]:
    """Welch's t-test of two groups' members' log ratios to the baseline's default, per task both
    groups finished and over tasks (geometric mean ratios); ``verdict`` says which group ends
    lower (its ratio over the other's, ``exp(difference)``) where p < ``level``, else that no
    difference is measurable, or that there is nothing to test."""
    def verdict(test: Dict[str, Optional[float]]) -> str:
        if test["p"] is None:
            return "not testable (a group with one member, or no spread)"
        if test["p"] >= level:
            return "no measurable difference"
        return f"{first if test['difference'] < 0 else second} lower"

    def logs(ratios: Sequence[Optional[float]]) -> Optional[List[float]]:
        return None if any(r is None for r in ratios) else [math.log(r) for r in ratios]

    out: Dict[str, Any] = {"first": first, "second": second, "level": level, "tasks": {}}
    a, b = groups[first], groups[second]
    for task in a["tasks"]:
        if task not in b["tasks"] or not (a["tasks"][task]["complete"] and b["tasks"][task]["complete"]):
            continue
        x = logs([r["vs_baseline_default"] for r in a["tasks"][task]["members"].values()])
        y = logs([r["vs_baseline_default"] for r in b["tasks"][task]["members"].values()])
        if x is None or y is None:
            out["tasks"][task] = {**_untested(None), "verdict": "a member diverged"}
        else:
            test = welch_test(x, y)
            out["tasks"][task] = {**test, "verdict": verdict(test)}
    if a["overall"]["members"] and b["overall"]["members"] and set(a["overall_tasks"]) == set(b["overall_tasks"]):
        test = welch_test([math.log(v) for v in a["overall"]["members"].values()],
                          [math.log(v) for v in b["overall"]["members"].values()])
        out["overall"] = {**test, "tasks": len(a["overall_tasks"]), "verdict": verdict(test)}
    return out


def _final_loss(entry: Dict[str, Any], which: str) -> Optional[float]:
    """Seed-mean final train loss of an optimizer's ``best`` or ``default`` setting (None when it
    has none, or every seed diverged)."""
    label = entry.get(which)
    return None if label is None else entry["settings"][label]["train_loss"]["mean"]


def interquartile_mean(values: Sequence[float]) -> float:
    """Mean of the middle half of ``values`` (rliable's IQM: the lowest and highest quarter
    trimmed, fractional weights at the cut points)."""
    x = sorted(values)
    n = len(x)
    lo, hi = n / 4, 3 * n / 4
    total = weight = 0.0
    for i, v in enumerate(x):
        w = max(0.0, min(i + 1, hi) - max(i, lo))
        if w > 0:
            total, weight = total + w * v, weight + w
    return total / weight


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def bootstrap_interval(values: Sequence[float], statistic, samples: int = BOOTSTRAP_SAMPLES,
                       seed: int = 0, level: float = 0.95) -> Tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over tasks resampled with replacement."""
    generator = torch.Generator().manual_seed(seed)
    n = len(values)
    draws = torch.randint(n, (samples, n), generator=generator).tolist()
    stats = sorted(statistic([values[i] for i in draw]) for draw in draws)
    low, high = (1 - level) / 2, 1 - (1 - level) / 2
    return stats[int(low * (samples - 1))], stats[int(math.ceil(high * (samples - 1)))]


def speedup_aggregates(values: Sequence[float]) -> Dict[str, Any]:
    """Median and interquartile mean of per-task speedups with 95 % bootstrap intervals, and the
    fraction of tasks above 1 (``inf``: beyond the horizon)."""
    return {"tasks": len(values), "median": _median(values), "median_ci": bootstrap_interval(values, _median),
            "iqm": interquartile_mean(values), "iqm_ci": bootstrap_interval(values, interquartile_mean),
            "fraction_above_1": sum(v > 1 for v in values) / len(values)}


# ---------------------------------------------------------------------------------------- output
def _fmt(stat: Dict[str, Optional[float]], digits: int = 4, scale: float = 1.0) -> str:
    if stat["mean"] is None:
        return "–"
    mean = f"{scale * stat['mean']:.{digits}f}"
    return mean if stat["std"] is None else f"{mean} ± {scale * stat['std']:.{digits}f}"


def _ratio(value: Optional[float], present: bool = True) -> str:
    if not present:
        return "–"
    return "diverged" if value is None else f"{value:.2f}"


def _speed(value: Optional[float], present: bool = True) -> str:
    if not present:
        return "–"
    return "> 1" if value is None or value == math.inf else f"{value:.2f}"


def rows(summary: Dict[str, Any]) -> List[Dict[str, str]]:
    """One row per task and optimizer: the table of the report."""
    out = []
    for task, by_optimizer in summary["tasks"].items():
        for name, entry in by_optimizer.items():
            best = entry["settings"][entry["best"]]
            row = {"task": task, "optimizer": name,
                   "best setting": entry["best"] + (f" (edge: {', '.join(entry['edge'])})" if entry["edge"] else ""),
                   "train loss": _fmt(best["train_loss"]), "test loss": _fmt(best["test_loss"]),
                   "test acc %": _fmt(best["test_acc"], 1, 100.0),
                   "÷ tuned base": _ratio(entry.get("best_vs_tuned_baseline"), "best_vs_tuned_baseline" in entry),
                   "speedup": _speed(entry.get("best_speedup"), "best_speedup" in entry),
                   "steps to baseline": "–" if entry.get("steps_to_baseline") is None
                   else str(entry["steps_to_baseline"]),
                   "s to baseline": "–" if entry.get("seconds_to_baseline") is None
                   else f"{entry['seconds_to_baseline']:.3g}",
                   "ms/step": f"{best['step_ms']:.1f}", "seeds": str(best["seeds"])}
            if entry["default"] is not None:
                default = entry["settings"][entry["default"]]
                row["untuned"] = (f"{_fmt(default['train_loss'])} ({entry['default']}); ÷ base default "
                                  f"{_ratio(entry.get('default_vs_baseline_default'), 'default_vs_baseline_default' in entry)}"
                                  f", ÷ tuned base {_ratio(entry.get('default_vs_tuned_baseline'), 'default_vs_tuned_baseline' in entry)}"
                                  f"; speedup {_speed(entry.get('default_speedup'), 'default_speedup' in entry)}")
            else:
                row["untuned"] = "–"
            out.append(row)
    return out


def markdown(summary: Dict[str, Any]) -> str:
    table = rows(summary)
    lines = [f"Sweep `{summary['name']}`: {summary['steps']} steps, seeds {summary['seeds']}; speedup over tuned "
             f"`{summary['baseline']}` (learned_optimization's convention; > 1: it never reaches the loss)."]
    if table:
        header = list(table[0])
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in table]
    counts = verdicts(summary)
    if counts:
        lines += [""] + [f"- {line}" for line in counts]
    if summary.get("groups"):
        lines += ["", "Groups of replicates: mean ± std over members (their default setting; ÷ the baseline's "
                  "default final train loss).", "", "| group | task | members | train loss | ÷ base default | "
                  "test acc % |", "|---|---|---|---|---|---|"]
        for name, group in summary["groups"].items():
            for task, entry in group["tasks"].items():
                lines.append(f"| {name} | {task} | {len(entry['members'])} of {len(group['members'])} | "
                             f"{_fmt(entry['train_loss'])} | {_fmt(entry['vs_baseline_default'], 3)} | "
                             f"{_fmt(entry['test_acc'], 1, 100.0)} |")
            lines.append(f"| {name} | geometric mean over {len(group['overall_tasks'])} tasks | "
                         f"{len(group['overall']['members'])} of {len(group['members'])} | – | "
                         f"{_fmt(group['overall']['vs_baseline_default'], 3)} | – |")
    comparison = summary.get("group_comparison")
    if comparison:
        lines += ["", f"`{comparison['first']}` against `{comparison['second']}` (Welch's t-test on the members' "
                  f"log ratios; a verdict needs p < {comparison['level']}):", "",
                  "| task | ratio of ratios | t | df | p | verdict |", "|---|---|---|---|---|---|"]
        tests = dict(comparison["tasks"])
        if "overall" in comparison:
            tests[f"geometric mean over {comparison['overall']['tasks']} tasks"] = comparison["overall"]
        for task, test in tests.items():
            lines.append("| " + " | ".join([task, "–" if test["difference"] is None else f"{math.exp(test['difference']):.3f}",
                                            "–" if test["t"] is None else f"{test['t']:.2f}",
                                            "–" if test["df"] is None else f"{test['df']:.1f}",
                                            "–" if test["p"] is None else f"{test['p']:.3f}", test["verdict"]]) + " |")
    if summary.get("machines"):
        lines += ["", "Where the trials ran (CPU, torch threads; ms/step compares only trials of one machine "
                  "and load):", "", "| optimizer | machine | trials |", "|---|---|---|"]
        for name, counts in summary["machines"].items():
            lines += [f"| {name} | {label} | {count} |" for label, count in counts.items()]
    if summary["aggregates"]:
        lines += ["", "| optimizer | tasks | median speedup (95 % CI) | IQM (95 % CI) | tasks > 1 |", "|---|---|---|---|---|"]
        for name, a in summary["aggregates"].items():
            lines.append(f"| {name} | {a['tasks']} | {_speed(a['median'])} ({_speed(a['median_ci'][0])}–"
                         f"{_speed(a['median_ci'][1])}) | {_speed(a['iqm'])} ({_speed(a['iqm_ci'][0])}–"
                         f"{_speed(a['iqm_ci'][1])}) | {100 * a['fraction_above_1']:.0f} % |")
    return "\n".join(lines) + "\n"


def verdicts(summary: Dict[str, Any]) -> List[str]:
    """Per optimizer, on how many tasks its default and its tuned setting end at or below the
    baseline's default and tuned final train loss."""
    lines = []
    names = [n for by in summary["tasks"].values() for n in by if n != summary["baseline"]]
    for name in dict.fromkeys(names):
        entries = [by[name] for by in summary["tasks"].values() if name in by]
        parts = []
        for which, label in (("default", "default"), ("best", "tuned")):
            for reference, text in (("baseline_default", "the baseline's default"), ("tuned_baseline", "tuned baseline")):
                key = f"{which}_vs_{reference}"
                ratios = [e[key] for e in entries if key in e]
                if ratios:
                    wins = sum(r is not None and r <= 1 for r in ratios)
                    parts.append(f"{label} ≤ {text} on {wins} of {len(ratios)}")
        if parts:
            lines.append(f"{name}: " + "; ".join(parts))
    return lines


def _legend(ax) -> None:
    """A legend, where the panel has labelled lines (a partial sweep can leave one empty)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _plots(summary: Dict[str, Any], out: Path) -> List[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    tasks = summary["tasks"]
    steps = summary["eval_steps"]
    if steps and tasks:
        fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
        for ax, (task, by_optimizer) in zip(axes[0], tasks.items()):
            for name, entry in by_optimizer.items():
                s = entry["settings"][entry["best"]]
                curves = torch.tensor(s["eval_curves"], dtype=torch.float64)
                mean, low, high = curves.mean(0), curves.amin(0), curves.amax(0)
                line, = ax.plot(steps, mean.tolist(), label=f"{name} ({entry['best']})")
                ax.fill_between(steps, low.tolist(), high.tolist(), color=line.get_color(), alpha=0.2)
            ax.set(title=task, xlabel="step", ylabel="train loss (seed mean, min-max band)", yscale="log")
            _legend(ax)
        fig.tight_layout()
        paths.append(out / "curves.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    speedups = {name: [(task, by[name].get("best_speedup")) for task, by in tasks.items()
                       if name in by and "best_speedup" in by[name]]
                for name in {n for by in tasks.values() for n in by} if name != summary["baseline"]}
    speedups = {k: v for k, v in sorted(speedups.items()) if v}
    if speedups:
        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(tasks) * len(speedups)), 3.8))
        width = 0.8 / len(speedups)
        names = list(tasks)
        for i, (name, values) in enumerate(speedups.items()):
            xs = [names.index(t) + i * width for t, _ in values]
            bars = ax.bar(xs, [2.0 if v is None else v for _, v in values], width, label=name)
            for bar, (_, v) in zip(bars, values):
                if v is None:  # beyond the horizon: drawn at 2, hatched
                    bar.set_hatch("//")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, rotation=20, ha="right", fontsize=7)
        ax.set(ylabel=f"speedup over tuned {summary['baseline']}\n(hatched at 2: never reached)", ylim=(0, 2.1))
        _legend(ax)
        fig.tight_layout()
        paths.append(out / "speedups.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    profile = performance_profile(summary)
    if profile:
        fig, ax = plt.subplots(figsize=(5, 3.8))
        for name, (taus, fractions) in profile.items():
            ax.step(taus, fractions, where="post", label=name)
        ax.set(xlabel="τ (final train loss ÷ best optimizer's on the task)", ylabel="fraction of tasks within τ",
               xscale="log", ylim=(0, 1.05))
        _legend(ax)
        fig.tight_layout()
        paths.append(out / "profile.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def performance_profile(summary: Dict[str, Any]) -> Dict[str, Tuple[List[float], List[float]]]:
    """Dolan-Moré profile on the best settings' final train loss: for each optimizer, the points
    ``(tau, fraction of tasks where its loss <= tau x the best optimizer's)``."""
    ratios: Dict[str, List[float]] = {}
    for by_optimizer in summary["tasks"].values():
        losses = {n: e["settings"][e["best"]]["train_loss"]["mean"] for n, e in by_optimizer.items()}
        finite = [v for v in losses.values() if v is not None]
        if not finite:
            continue
        best = min(finite)
        for name, loss in losses.items():
            ratios.setdefault(name, []).append(math.inf if loss is None else loss / best if best > 0 else 1.0)
    # one grid of tau for every optimizer, past the largest finite ratio, so each line is drawn in full
    finite = {v for values in ratios.values() for v in values if math.isfinite(v)} | {1.0}
    taus = sorted(finite) + [max(finite) * 1.1]
    return {name: (taus, [sum(v <= t for v in values) / len(values) for t in taus]) for name, values in ratios.items()}


def write_report(run_dir: Union[str, Path], out: Optional[Union[str, Path]] = None) -> Dict[str, Path]:
    """Tables (``table.md``, ``table.csv``), the summary (``summary.json``) and plots
    (``curves.png``, ``speedups.png``, ``profile.png``) of the sweep in ``run_dir``, written to
    ``out`` (default ``run_dir/report``). Returns the paths written."""
    store = SweepStore(run_dir)
    definition = store.definition()
    if definition is None:
        raise SweepError(f"{run_dir} holds no sweep (no {store.path.name})")
    summary = summarize(SweepSpec.from_dict(definition), store)
    out = Path(out) if out is not None else Path(run_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out / "summary.json", "markdown": out / "table.md", "csv": out / "table.csv"}
    paths["summary"].write_text(json.dumps(summary, indent=1, default=str) + "\n")
    paths["markdown"].write_text(markdown(summary))
    table = rows(summary)
    with paths["csv"].open("w", newline="") as f:
        if table:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    for path in _plots(summary, out):
        paths[path.stem] = path
    return paths
