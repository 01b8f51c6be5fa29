"""The index of ``benchmarks/results/``: what each result file is and the command that made it.

Run: ``python benchmarks/results_index.py`` after adding results; writes
``benchmarks/results/INDEX.md`` (a table per kind of benchmark: file, machine, command, and the
plots whose names share the file's tag). ``tests/test_results_index.py`` checks it is current.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

RESULTS = Path(__file__).resolve().parent / "results"
INDEX = RESULTS / "INDEX.md"


def _machine(info: Dict) -> str:
    if not isinstance(info, dict):
        return "?"
    return str(info.get("gpu") or info.get("cpu") or "?")


def render(results: Path = RESULTS) -> str:
    """The index's Markdown for the files in ``results``."""
    by_kind: Dict[str, List[str]] = defaultdict(list)
    images = sorted(p.name for p in results.glob("*.png"))
    claimed = set()
    for path in sorted(results.glob("*.json")):
        blob = json.loads(path.read_text())
        stem = path.stem
        # plots named after the file (stem_...png) or after its tag (heldout_<task>_<machine>_<tag>.png
        # beside heldout_<machine>_<tag>.json, meta_curves_<run>.png beside meta_train_<run>.json)
        tail = stem[len(str(blob.get("benchmark", ""))) + 1:] if stem.startswith(f"{blob.get('benchmark')}_") else None
        plots = [name for name in images if name.startswith(stem + ".") or name.startswith(stem + "_")
                 or (tail and name[:-len(".png")].endswith("_" + tail))]
        claimed.update(plots)
        command = str(blob.get("command", "?")).replace("|", "\\|")
        row = f"| `{path.name}` | {_machine(blob.get('machine'))} | `{command}` |"
        if plots:
            row = row[:-1] + " " + ", ".join(f"`{p}`" for p in plots) + " |"
        else:
            row += " |"
        by_kind[str(blob.get("benchmark", "other"))].append(row)
    lines = ["# benchmarks/results", "",
             "Made by `python benchmarks/results_index.py`: every result file, the machine it says produced it",
             "and the command that made it (rerun that command to reproduce it). Plots are listed beside the",
             "result whose name they extend; the others, and text files, at the end.", ""]
    for kind in sorted(by_kind):
        lines += [f"## {kind}", "", "| file | machine | command | plots |", "|---|---|---|---|", *by_kind[kind], ""]
    rest = [name for name in images if name not in claimed]
    rest += sorted(p.name for p in results.iterdir() if p.is_file() and p.suffix not in (".json", ".png")
                   and p.name != INDEX.name)
    if rest:
        lines += ["## other files (plots named by task, and text)", "", *(f"- `{name}`" for name in rest), ""]
    return "\n".join(lines)


def main() -> None:
    INDEX.write_text(render())
    print(f"wrote {INDEX}")


if __name__ == "__main__":
    sys.exit(main())
