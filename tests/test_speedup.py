"""Speedup over tuned Adam (learned_optimization's convention) against a hand-computed example."""
import math

import pytest

from l2o_graphs.speedup import speedup, tuned_curve


def test_tuned_curve_is_running_min_of_best_seed_mean():
    curves = {"a": [[4.0, 3.0, 2.5, 2.6], [4.0, 3.0, 2.5, 2.6]],  # seed mean 4, 3, 2.5, 2.6
              "b": [[3.0, 3.5, 1.0, 0.5], [5.0, 3.5, 3.0, 0.5]]}  # seed mean 4, 3.5, 2.0, 0.5
    assert tuned_curve(curves).tolist() == [4.0, 3.0, 2.0, 0.5]


def test_speedup_is_first_step_reaching_the_target_over_the_horizon():
    curves = {"a": [[4.0, 3.0, 2.5, 2.6]], "b": [[4.0, 3.5, 2.0, 0.5]]}
    steps = [250, 500, 750, 1000]
    assert speedup(curves, steps, target=3.0) == 0.5  # tuned reaches 3.0 at step 500 of 1000
    assert speedup(curves, steps, target=2.2) == 0.75
    assert speedup(curves, steps, target=0.4) is None  # never: the learned one is ahead at the horizon
    assert speedup(curves, steps, target=9.0) == 0.25


def test_diverged_settings_never_reach_anything():
    curves = {"diverged": [[math.nan, math.nan]], "slow": [[3.0, 2.0]]}
    assert speedup(curves, [1, 2], target=2.5) == 1.0


def test_train_with_records_the_train_loss_curve_and_stops_a_diverged_run():
    import torch

    from l2o_graphs.tasks.task import Task, TaskSpec
    from l2o_graphs.tasks.train import EVAL_CURVE, train_with

    spec = TaskSpec({"kind": "mlp", "hidden": [8], "activation": "relu"}, "digits", 32, 0)
    run = train_with(spec, lambda m: torch.optim.Adam(m.parameters(), lr=1e-2), 25, seed=1, eval_every=10)
    assert run["eval_steps"] == [10, 20, 25] and len(run["eval_curve"]) == 3 and len(run["curve"]) == 25
    assert run["eval_curve"][-1] < run["eval_curve"][0]
    # the last point is the train loss on the first EVAL_CURVE images (all 1,437 digits here)
    task = Task(spec)
    assert len(task.train_y) <= EVAL_CURVE and run["eval_curve"][-1] == pytest.approx(run["train_loss"], rel=1e-5)
    diverged = train_with(spec, lambda m: torch.optim.SGD(m.parameters(), lr=float("inf")), 25, seed=1, eval_every=10)
    assert len(diverged["curve"]) == 25 and math.isnan(diverged["curve"][-1])
    assert len(diverged["eval_curve"]) == 3 and math.isnan(diverged["eval_curve"][-1])
