"""benchmarks/heldout.py's --reuse: one optimizer's settings from several result files merge into
one entry whose best is the best of the union (a learning-rate grid split over processes)."""
import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def heldout():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("heldout_script", BENCHMARKS / "heldout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(BENCHMARKS))


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
