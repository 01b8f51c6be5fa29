"""benchmarks/heldout.py's --reuse: one optimizer's settings from several result files merge into
one entry whose best is the best of the union (a learning-rate grid split over processes); and
heldout_table.py's verdicts (the floor, ties with tuned Adam) follow the numbers; record_meta_run.py's
summary of an auxiliary warm-up against hand values."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"{name}_script", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def heldout():
    sys.path.insert(0, str(BENCHMARKS))
    yield _load("heldout")
    sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def record_meta_run():
    sys.path.insert(0, str(BENCHMARKS))
    yield _load("record_meta_run")
    sys.path.remove(str(BENCHMARKS))


def test_the_warmup_summary_counts_its_seconds_only_where_every_step_logged_them(record_meta_run):
    rows = [{"step": i + 1, "aux_inr": float(20 - i), "seconds": 0.5} for i in range(20)]
    summary = record_meta_run.warmup_summary(rows)
    assert summary == {"steps": 20, "seconds": 10, "aux_inr_first_tenth": 19.5, "aux_inr_last_tenth": 1.5}
    # a warm-up logged before its steps had seconds (or with one step short of them): unknown, not zero
    del rows[3]["seconds"]
    assert record_meta_run.warmup_summary(rows)["seconds"] is None


def test_a_runs_wall_time_counts_its_warmup_and_a_missing_log_is_unknown(record_meta_run, tmp_path):
    steps = [{"seconds": 2.0}] * 3
    validation = [{"seconds": 1.0}]
    warmup = [{"step": i + 1, "aux_inr": 2.0, "seconds": 0.25} for i in range(8)]
    (tmp_path / "auxiliary_warmup.jsonl").write_text("".join(json.dumps(r) + "\n" for r in warmup))
    record = record_meta_run.warmup_record(tmp_path, {"auxiliary_warmup": 8})
    assert record["steps"] == 8 and record["seconds"] == 2
    assert record_meta_run.wall_seconds(steps, validation, record) == 6 + 1 + 2
    # configured without a warm-up: none, whatever the directory holds
    assert record_meta_run.warmup_record(tmp_path, {"auxiliary_warmup": 0}) is None
    assert record_meta_run.wall_seconds(steps, None, None) == 6
    # carried on in a new directory: the warm-up happened, its time is unknown and adds nothing
    carried = record_meta_run.warmup_record(tmp_path / "elsewhere", {"auxiliary_warmup": 8})
    assert carried == {"steps": None, "seconds": None}
    assert record_meta_run.wall_seconds(steps, validation, carried) == 7


def _entry(losses, curves):
    settings = {k: {"train_loss": {"mean": v, "std": 0.0}, "diverged": 0 if v is not None else 1}
                for k, v in losses.items()}
    best = min((k for k, v in losses.items() if v is not None), key=losses.get)
    return {"best": best, "best_curve": curves[best], "settings": settings, "learned": True}


def test_merge_takes_the_union_and_the_best_of_it(heldout):
    first = _entry({"lr=1": 0.5, "lr=3": 0.4}, {"lr=1": [1.0], "lr=3": [3.0]})
    second = _entry({"lr=10": 0.3, "lr=30": None}, {"lr=10": [10.0]})
    merged = heldout._merge(first, second)
    assert set(merged["settings"]) == {"lr=1", "lr=3", "lr=10", "lr=30"}
    assert merged["best"] == "lr=10" and merged["best_curve"] == [10.0]
    again = heldout._merge(second, first)  # order does not change the best
    assert again["best"] == "lr=10" and again["best_curve"] == [10.0]


def test_merge_keeps_the_earlier_best_when_new_settings_are_worse(heldout):
    first = _entry({"lr=1": 0.2}, {"lr=1": [1.0]})
    second = _entry({"lr=0.1": 0.9}, {"lr=0.1": [0.1]})
    merged = heldout._merge(first, second)
    assert merged["best"] == "lr=1" and merged["best_curve"] == [1.0]


def test_a_diverged_setting_is_never_best(heldout):
    first = _entry({"lr=1": 0.7}, {"lr=1": [1.0]})
    second = {"best": "lr=100", "best_curve": [], "learned": True,
              "settings": {"lr=100": {"train_loss": {"mean": 0.01, "std": 0.0}, "diverged": 2}}}
    assert heldout._merge(first, second)["best"] == "lr=1"


def _setting(loss):
    return {"train_loss": {"mean": loss, "std": 0.01}, "test_acc": {"mean": 0.9, "std": 0.0}, "diverged": 0}


def _payload(learned_losses):
    results = {}
    for i, mine in enumerate(learned_losses):
        adam = {"0.0001": _setting(0.9), "0.001": _setting(0.5), "0.003": _setting(0.4)}
        untuned = {"setting": "lr=1", "vs_adam_1e-3": mine / 0.5, "vs_tuned_adam": mine / 0.4,
                   "speedup_over_tuned_adam": 0.5}
        results[f"task{i}"] = {"adam": {"best": "0.003", "settings": adam},
                               "ng-gnn": {"best": "lr=1", "settings": {"lr=1": _setting(mine)},
                                          "untuned": untuned, "tuned": untuned}}
    return {"results": results}


def test_table_reports_the_floor_from_the_numbers():
    table = _load("heldout_table").table
    met = table(_payload([0.3, 0.45, 0.5]), "ng-gnn")
    assert "floor (untuned ≤ Adam 1e-3 on every task): met (3 of 3)" in met
    assert "untuned ≤ tuned Adam on 1 task(s)" in met
    assert "| 0.3000 ± 0.0100, 90.0 % | 0.60 | 0.75 | 0.50 |" in met
    missed = table(_payload([0.3, 0.51]), "ng-gnn")  # one task a little behind Adam at 1e-3
    assert "missed (1 of 2)" in missed
