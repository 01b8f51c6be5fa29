"""The held-out table of the README from a result file of ``benchmarks/heldout.py``.

Run: ``python benchmarks/heldout_table.py benchmarks/results/heldout_<machine>_<tag>.json [--learned NAME]``.

Prints one Markdown row per task: Adam at 1e-3 and LR-tuned Adam (final train loss, mean ± std
over seeds, test accuracy, the best rate), the learned optimizer untuned (``lr=1``) and tuned (its
best ``lr`` multiplier, when the file holds more than one), their ratios to both Adams and the
speedup over tuned Adam; then the floor (untuned ≤ Adam 1e-3 on every task), the number of tasks
where the untuned optimizer is ≤ tuned Adam, and the median speedup.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Dict, Optional


def _cell(setting: Dict, rate: Optional[str] = None) -> str:
    loss, acc = setting["train_loss"], setting["test_acc"]
    if loss["mean"] is None:
        return "diverged"
    text = f"{loss['mean']:.4f} ± {loss['std']:.4f}, {100 * acc['mean']:.1f} %"
    return f"{text} ({rate})" if rate else text


def _ratio(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.2f}"


def _speedup(value) -> str:
    if value is None:
        return "> 1"  # tuned Adam never reaches the learned optimizer's final loss
    return "–" if value == "n/a" else f"{value:.2f}"


def table(payload: Dict, learned: str) -> str:
    rows = ["| task | Adam 1e-3 | Adam tuned (lr) | learned, untuned | ÷ Adam 1e-3 | ÷ tuned Adam | speedup "
            "| learned, tuned (lr) | ÷ tuned Adam |",
            "|---|---|---|---|---|---|---|---|---|"]
    floor, beats_tuned, speedups = [], 0, []
    for task, results in payload["results"].items():
        adam, mine = results.get("adam"), results.get(learned)
        if adam is None or mine is None:
            continue
        ref = adam["settings"].get("0.001")
        grid = len(adam["settings"]) > 1
        untuned, tuned = mine["untuned"], mine["tuned"]
        floor.append(untuned.get("vs_adam_1e-3") is not None and untuned["vs_adam_1e-3"] <= 1)
        beats_tuned += grid and untuned.get("vs_tuned_adam") is not None and untuned["vs_tuned_adam"] <= 1
        speed = untuned.get("speedup_over_tuned_adam", "n/a")
        if grid:
            speedups.append(float("inf") if speed is None else speed)
        rows.append(" | ".join([
            f"| {task}", _cell(ref) if ref else "–",
            _cell(adam["settings"][adam["best"]], adam["best"]) if grid else "not run",
            _cell(mine["settings"][untuned["setting"]]), _ratio(untuned.get("vs_adam_1e-3")),
            _ratio(untuned.get("vs_tuned_adam")), _speedup(speed) if grid else "–",
            _cell(mine["settings"][tuned["setting"]], tuned["setting"]) if len(mine["settings"]) > 1 else "not run",
            _ratio(tuned.get("vs_tuned_adam")) if len(mine["settings"]) > 1 else "–"]) + " |")
    median = statistics.median(speedups) if speedups else None
    rows += ["", f"floor (untuned ≤ Adam 1e-3 on every task): {'met' if floor and all(floor) else 'missed'} "
             f"({sum(floor)} of {len(floor)}); untuned ≤ tuned Adam on {beats_tuned} task(s); median speedup over "
             f"tuned Adam: {'–' if median is None else ('> 1' if median == float('inf') else f'{median:.2f}')}"]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("result", type=Path)
    parser.add_argument("--learned", default="ng-gnn", help="the learned optimizer's name in the file")
    args = parser.parse_args()
    payload = json.loads(args.result.read_text())
    print(f"{payload['machine']['cpu']}; {payload['steps']} steps, {payload['seeds']} seeds; {payload['command']}")
    print(table(payload, args.learned))


if __name__ == "__main__":
    main()
