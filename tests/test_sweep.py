"""Benchmark sweeps: the YAML's checks, resumable trials in SQLite (a real kill included), local
workers and Ray giving the same records, user tasks and optimizers, failures, and the report's
speedups and grid-edge flags against hand-computed curves."""
import copy
import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from l2o_graphs.sweep import SweepError, load_sweep, parse_sweep, run_sweep, sweep_status, write_report
from l2o_graphs.machine import cpu_model
from l2o_graphs.sweep.report import (NOT_RECORDED, edge_of_grid, first_step_reaching, interquartile_mean,
                                     performance_profile, regularized_incomplete_beta, speedup_aggregates, summarize, welch_test,
                                     compare_groups, group_summary)
from l2o_graphs.sweep.spec import SweepSpec
from l2o_graphs.optim import load_weights, save_weights
from l2o_graphs.sweep.spec import Trial
from l2o_graphs.sweep.store import SweepStore
from l2o_graphs.tasks.task import evaluate
from l2o_graphs.tasks.train import Problem

REPO = Path(__file__).resolve().parents[1]
PER_RUN = ("step_ms", "optimizer_ms", "wall_s", "machine")  # timings and where they were taken
DIGITS_MLP = {"name": "digits-mlp", "architecture": {"kind": "mlp", "hidden": [8], "activation": "relu"},
              "dataset": "digits", "batch_size": 32}


def tiny(**changes):
    data = {"name": "tiny", "steps": 20, "seeds": 2, "eval_every": 5, "test_curve": True,
            "tasks": [DIGITS_MLP, {"name": "blobs", "function": "sweep_helpers:blobs", "args": {"width": 6}}],
            "optimizers": {"adam": {"kind": "adam", "grid": {"lr": [1e-3, 1e-2]}, "default": {"lr": 1e-3}},
                           "sgd": {"kind": "sgd", "args": {"momentum": 0.9}, "grid": {"lr": [0.1]}}}}
    data.update(changes)
    return data


def results(run_dir):
    """``{trial key: result without timings and machine}`` of the done trials; every trial recorded once."""
    records = SweepStore(run_dir).records()
    keys = [r.trial.key for r in records]
    assert len(keys) == len(set(keys))
    return {r.trial.key: {k: v for k, v in r.result.items() if k not in PER_RUN}
            for r in records if r.status == "done"}


# ------------------------------------------------------------------------------------- the YAML
@pytest.mark.parametrize("change, path", [
    (lambda d: d.update(steps=0), "steps:"),
    (lambda d: d.update(seeds=[1, 1]), "seeds:"),
    (lambda d: d.update(stepz=3), "sweep.stepz:"),
    (lambda d: d.update(tasks=[]), "tasks:"),
    (lambda d: d["tasks"].append("no-such-task"), "tasks[2]:"),
    (lambda d: d["tasks"].append({"name": "x", "function": "sweep_helpers:missing"}), "tasks[2].function:"),
    (lambda d: d["tasks"].append({**DIGITS_MLP, "name": "y", "dataset": "imagenet"}), "tasks[2].dataset:"),
    (lambda d: d["tasks"].append({**DIGITS_MLP, "name": "z", "architecture": {"kind": "rnn"}}),
     "tasks[2].architecture:"),
    (lambda d: d["tasks"].append(DIGITS_MLP), "tasks:"),  # a name twice
    (lambda d: d["optimizers"]["adam"]["grid"].update(lr="fast"), "optimizers.adam.grid.lr:"),
    (lambda d: d["optimizers"]["adam"]["grid"].update(lr={"log": [0, 1], "points": 3}),
     "optimizers.adam.grid.lr.log:"),
    (lambda d: d["optimizers"]["adam"].update(lrr=1), "optimizers.adam.lrr:"),
    (lambda d: d["optimizers"]["adam"].update(default={"lr": 0.5}), "optimizers.adam.default:"),
    (lambda d: d["optimizers"]["adam"].update(args={"lr": 0.5}), "optimizers.adam.grid.lr:"),
    (lambda d: d["optimizers"].update(x={"kind": "torch.optim.NoSuch"}), "optimizers.x.kind:"),
    (lambda d: d["optimizers"].update(x={"kind": "learned"}), "optimizers.x.weights:"),
    (lambda d: d["optimizers"].update(x={"kind": "learned", "weights": "no/such.pt"}), "optimizers.x.weights:"),
    (lambda d: d.update(baseline="rmsprop"), "baseline:"),
    (lambda d: d.update(groups={"g": []}), "groups.g:"),
    (lambda d: d.update(groups={"g": ["sgd", "rmsprop"]}), "groups.g:"),
    (lambda d: d.update(groups={"g": ["adam"]}), "groups.g:"),  # the baseline
    (lambda d: d.update(groups={"g": ["sgd"], "h": ["sgd"]}), "groups.h:"),
    (lambda d: d.update(groups=["sgd"]), "groups:"),
])
def test_a_malformed_sweep_names_its_bad_field(change, path):
    data = copy.deepcopy(tiny())
    change(data)
    with pytest.raises(SweepError) as err:
        parse_sweep(data)
    assert str(err.value).startswith(path), str(err.value)


def test_grids_expand_to_every_combination_and_log_ranges_include_their_ends(tmp_path):
    data = tiny(seeds=[3, 7], optimizers={
        "adam": {"kind": "adam", "grid": {"lr": {"log": [1e-3, 1.0], "points": 4}, "betas": [[0.9, 0.999], [0.8, 0.9]]}},
        "radam": {"kind": "torch.optim.RAdam"}})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_sweep(path)
    adam = spec.optimizer("adam")
    assert adam.grid["lr"] == [1e-3, 1e-2, 1e-1, 1.0]
    assert len(adam.settings()) == 8 and spec.optimizer("radam").settings() == [{}]
    assert len(spec.trials()) == 2 * (8 + 1) * 2 and {t.seed for t in spec.trials()} == {3, 7}
    assert spec.baseline == "adam" and spec.name == "tiny"


def test_a_problem_refuses_bad_data_and_evaluation_restores_the_models_mode():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="Problem.train"):
        Problem(model, (torch.zeros(4, 3), torch.zeros(5)))
    with pytest.raises(ValueError, match="batch_size"):
        Problem(model, (torch.zeros(4, 3), torch.zeros(4)), batch_size=0)
    x, y = torch.randn(10, 3), torch.tensor([0, 1] * 5)
    model.train()
    loss, acc = evaluate(model, x, y, chunk=3)
    assert model.training
    logits = model(x).detach()
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-6)
    assert acc == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    _, no_acc = evaluate(model, x, torch.randn(10, 2), loss=torch.nn.functional.mse_loss)
    assert no_acc is None


# ------------------------------------------------------------------------------------- running
@pytest.mark.slow
def test_a_rerun_skips_finished_trials_and_a_changed_meaning_is_refused(tmp_path):
    spec = parse_sweep(tiny())
    first = run_sweep(spec, tmp_path, workers=1, threads=1, progress=False)
    assert first["done"] == len(spec.trials()) == 12 and first["failed"] == 0
    again = run_sweep(spec, tmp_path, workers=1, threads=1, progress=False)
    assert again["done"] == 0 and again["skipped"] == 12
    more = parse_sweep(tiny(seeds=3))  # a new seed: only its trials run
    assert run_sweep(more, tmp_path, workers=1, threads=1, progress=False)["done"] == 6
    with pytest.raises(SweepError, match="changes what 18 finished trial"):
        run_sweep(parse_sweep(tiny(seeds=3, steps=21)), tmp_path, workers=1, progress=False)
    assert sweep_status(tmp_path)["done"] == 18
    # every trial records where it ran: this CPU at the trials' thread count, no GPU
    machines = {json.dumps(r.result["machine"], sort_keys=True) for r in SweepStore(tmp_path).records()}
    assert len(machines) == 1
    machine = json.loads(machines.pop())
    assert machine["cpu"] == cpu_model() and machine["torch_threads"] == 1 and "gpu" not in machine


@pytest.mark.slow
def test_merge_takes_the_same_trials_from_another_sweep_and_nothing_else(tmp_path):
    """A sweep with added optimizers takes their trials from the sweep file they ran under when
    they mean the same (same definition); a same-named optimizer defined otherwise is left to run;
    the merged sweep then equals one run whole."""
    from l2o_graphs.sweep import merge_sweep

    def nesterov(momentum):
        return {"kind": "sgd", "args": {"momentum": momentum, "nesterov": True}, "grid": {"lr": [0.1]}}

    other = tiny(optimizers={"sgd": tiny()["optimizers"]["sgd"], "nesterov": nesterov(0.5)})
    run_sweep(parse_sweep(other), tmp_path / "other", workers=1, threads=1, progress=False)
    main = parse_sweep(tiny(optimizers={"adam": tiny()["optimizers"]["adam"]}))
    run_sweep(main, tmp_path / "main", workers=1, threads=1, progress=False)
    every = parse_sweep(tiny(optimizers={**tiny()["optimizers"], "nesterov": nesterov(0.9)}))
    counts = merge_sweep(every, tmp_path / "main", tmp_path / "other")
    assert counts == {"merged": 4, "present": 0, "foreign": 4}  # sgd's trials; nesterov's mean otherwise
    assert run_sweep(every, tmp_path / "main", workers=1, threads=1, progress=False)["done"] == 4
    run_sweep(every, tmp_path / "whole", workers=1, threads=1, progress=False)
    assert results(tmp_path / "main") == results(tmp_path / "whole")
    assert merge_sweep(every, tmp_path / "main", tmp_path / "other") == {"merged": 0, "present": 8, "foreign": 0}
    with pytest.raises(SweepError, match="holds no sweep"):
        merge_sweep(every, tmp_path / "main", tmp_path / "nothing")


def _learned(weights, lrs=(1,)):
    return {"kind": "learned", "weights": str(weights), "grid": {"lr": list(lrs)}, "default": {"lr": lrs[0]}}


@pytest.mark.slow
def test_a_moved_weights_file_means_the_same_and_a_renamed_optimizer_merges(tmp_path):
    """The meaning of a learned optimizer's trials is its weights' content, not their path: a
    file moved (a candidate shipped) keeps its trials; merge --rename records them under the name
    the sweep file now gives that optimizer; a file with other content is another meaning."""
    import shutil

    from l2o_graphs.sweep import merge_sweep

    shipped = REPO / "l2o_graphs/pretrained/ng-gnn.pt"
    shutil.copy(shipped, tmp_path / "candidate.pt")
    before = parse_sweep(tiny(tasks=[DIGITS_MLP], optimizers={"candidate": _learned(tmp_path / "candidate.pt")}))
    run_sweep(before, tmp_path / "old", workers=1, threads=1, progress=False)
    (tmp_path / "moved").mkdir()
    shutil.move(tmp_path / "candidate.pt", tmp_path / "moved" / "default.pt")
    moved = parse_sweep(tiny(tasks=[DIGITS_MLP], optimizers={"candidate": _learned(tmp_path / "moved" / "default.pt")}))
    assert all(moved.meaning(t) == before.meaning(t) for t in moved.trials())
    counts = run_sweep(moved, tmp_path / "old", workers=1, threads=1, progress=False)
    assert (counts["done"], counts["skipped"]) == (0, 2)  # nothing rerun

    after = parse_sweep(tiny(tasks=[DIGITS_MLP], optimizers={"default": _learned(tmp_path / "moved" / "default.pt")}))
    assert merge_sweep(after, tmp_path / "new", tmp_path / "old", renames={"candidate": "default"}) == {
        "merged": 2, "present": 0, "foreign": 0}
    assert sorted(json.loads(k)[1] for k in results(tmp_path / "new")) == ["default", "default"]
    with pytest.raises(SweepError, match="no such optimizer"):
        merge_sweep(after, tmp_path / "new", tmp_path / "old", renames={"candidate": "typo"})
    # negative control: other weights under the old name and path are another meaning, not merged
    other = tmp_path / "moved" / "other.pt"
    net = load_weights(shipped)
    with torch.no_grad():
        net.edge_dec_out.bias.add_(0.1)
    save_weights(net, other)
    changed = parse_sweep(tiny(tasks=[DIGITS_MLP], optimizers={"default": _learned(other)}))
    assert merge_sweep(changed, tmp_path / "fresh", tmp_path / "old", renames={"candidate": "default"}) == {
        "merged": 0, "present": 0, "foreign": 2}


@pytest.mark.slow
@pytest.mark.parametrize("version", [0, 1])
def test_records_written_with_an_earlier_meaning_still_count(tmp_path, version):
    """Results directories written before paths and names (version 0) or the grid's other points
    (version 1) stopped counting hold those digests: they are still the trials' results (no
    rerun), and a changed file is still refused."""
    
    spec = parse_sweep(tiny(tasks=[DIGITS_MLP], optimizers={"ng-gnn": _learned(REPO / "l2o_graphs/pretrained/ng-gnn.pt")}))
    run_sweep(spec, tmp_path, workers=1, threads=1, progress=False)
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        for trial in spec.trials():
            db.execute("UPDATE trials SET meaning = ? WHERE key = ?", (spec.meaning(trial, version), trial.key))
    assert spec.meaning(spec.trials()[0], version) != spec.meaning(spec.trials()[0])
    counts = run_sweep(spec, tmp_path, workers=1, threads=1, progress=False)
    assert (counts["done"], counts["skipped"]) == (0, 2)
    assert sweep_status(tmp_path)["done"] == 2
    with pytest.raises(ValueError, match="meaning version"):
        spec.meaning(spec.trials()[0], 3)


@pytest.mark.slow
@pytest.mark.parametrize("written_as", [1, 2])
def test_a_grid_with_more_points_keeps_the_trials_it_had(tmp_path, written_as):
    """Extending a grid runs only its new points, also in a directory written when the digest held
    the whole grid (version 1: upgraded on the next run); the setting itself is part of a trial's
    meaning (negative control: the same optimizer at another setting means something else)."""
    
    weights = REPO / "l2o_graphs/pretrained/ng-gnn.pt"
    one = parse_sweep(tiny(tasks=[DIGITS_MLP], optimizers={"ng-gnn": _learned(weights, lrs=(1,))}))
    run_sweep(one, tmp_path, workers=1, threads=1, progress=False)
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        for trial in one.trials():
            db.execute("UPDATE trials SET meaning = ? WHERE key = ?", (one.meaning(trial, written_as), trial.key))
    two = parse_sweep(tiny(tasks=[DIGITS_MLP], optimizers={"ng-gnn": _learned(weights, lrs=(1, 3))}))
    assert [two.meaning(t) for t in two.trials() if t.setting == {"lr": 1}] == [one.meaning(t) for t in one.trials()]
    counts = run_sweep(two, tmp_path, workers=1, threads=1, progress=False)
    assert (counts["done"], counts["skipped"]) == (2, 2)
    assert sweep_status(tmp_path)["done"] == 4
    at_1, at_3 = (next(t for t in two.trials() if t.setting == {"lr": lr}) for lr in (1, 3))
    assert two.meaning(at_1) != two.meaning(at_3)


@pytest.mark.slow
def test_two_local_workers_and_a_learned_optimizer_give_the_records_of_one(tmp_path):
    data = tiny()
    data["optimizers"]["ng-gnn"] = {"kind": "learned", "weights": str(REPO / "l2o_graphs/pretrained/ng-gnn.pt"),
                                    "grid": {"lr": [1, 3]}, "default": {"lr": 1}}
    spec = parse_sweep(data)
    run_sweep(spec, tmp_path / "one", workers=1, threads=1, progress=False)
    run_sweep(spec, tmp_path / "two", workers=2, threads=1, progress=False)
    one, two = results(tmp_path / "one"), results(tmp_path / "two")
    assert len(one) == len(spec.trials()) == 20 and one == two
    record = next(iter(one.values()))
    assert record["eval_steps"] == [0, 5, 10, 15, 20] and len(record["test_acc_curve"]) == 5
    assert record["eval_curve"][-1] == pytest.approx(record["train_loss"], rel=1e-5)  # < EVAL_CURVE examples


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    data = tiny(tasks=[DIGITS_MLP, {"name": "broken", "function": "sweep_helpers:not_a_problem"}])
    data["optimizers"] = {"sgd": {"kind": "sgd", "grid": {"lr": [-1.0, 0.1]}},
                          "sign": {"kind": "sweep_helpers:SignSGD", "grid": {"lr": [0.01]}}}
    spec = parse_sweep(data)
    counts = run_sweep(spec, tmp_path, workers=2, threads=1, progress=False)
    assert counts == {**counts, "done": 4, "failed": 8}
    status = sweep_status(tmp_path)
    assert status["done"] == 4 and status["failed"] == 8 and status["left"] == 0
    errors = dict(status["failed_trials"])
    assert errors["digits-mlp / sgd (lr=-1) / seed 0"].startswith("ValueError: Invalid learning rate")
    assert "not a l2o_graphs.tasks.train.Problem" in errors["broken / sign (lr=0.01) / seed 1"]
    assert "failed: digits-mlp / sgd (lr=-1) / seed 1" in capsys.readouterr().out
    # a rerun retries the failed trials only, and the report shows the ones that ran
    assert run_sweep(spec, tmp_path, workers=1, threads=1, progress=False)["failed"] == 8
    summary = summarize(spec, SweepStore(tmp_path))
    assert summary["tasks"]["broken"] == {} and summary["tasks"]["digits-mlp"]["sign"]["best"] == "lr=0.01"


@pytest.mark.slow
def test_a_dead_worker_process_fails_its_trial_and_the_sweep_goes_on(tmp_path):
    data = tiny(tasks=[{"name": "dies", "function": "sweep_helpers:dies"}], seeds=2,
                optimizers={"sgd": {"kind": "sgd", "grid": {"lr": [0.1, 0.2]}}})
    counts = run_sweep(parse_sweep(data), tmp_path, workers=1, threads=1, progress=False)
    assert counts["done"] == 2 and counts["failed"] == 2
    errors = dict(sweep_status(tmp_path)["failed_trials"])
    assert set(errors) == {"dies / sgd (lr=0.1) / seed 0", "dies / sgd (lr=0.2) / seed 0"}
    assert all("worker process died" in e for e in errors.values())


@pytest.mark.slow
def test_a_killed_sweep_resumes_to_the_records_of_an_uninterrupted_one(tmp_path):
    data = tiny(steps=150, seeds=3, tasks=[DIGITS_MLP], optimizers={
        "adam": {"kind": "adam", "grid": {"lr": [1e-3, 3e-3, 1e-2, 3e-2]}}})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_sweep(path)
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "l2o_graphs.cli", "sweep", "run", str(path), "--run-dir", str(run_dir),
               "--workers", "1", "--threads", "1", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    store = SweepStore(run_dir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if store.exists() and len(store.records()) >= 3:
            break
        time.sleep(0.02)
    assert process.poll() is None, process.stderr.read().decode()[-3000:]
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and its worker, mid-way
    process.wait()
    killed = len(store.records())
    assert 3 <= killed < len(spec.trials())
    status = sweep_status(run_dir)
    assert status["done"] == killed and status["running"] == 0  # the killed run's marks are not live
    counts = run_sweep(spec, run_dir, workers=1, threads=1, progress=False)
    assert counts["skipped"] == killed and counts["done"] == len(spec.trials()) - killed
    run_sweep(spec, tmp_path / "whole", workers=1, threads=1, progress=False)
    assert results(run_dir) == results(tmp_path / "whole")


@pytest.mark.slow
def test_ray_runs_the_trials_into_the_same_records(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'l2o_graphs[ray]')")
    spec = parse_sweep(tiny(tasks=[DIGITS_MLP]))  # built-in pieces only: Ray's workers import the package
    run_sweep(spec, tmp_path / "local", workers=1, threads=1, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        counts = run_sweep(spec, tmp_path / "ray", ray="local", threads=1, progress=False)
    finally:
        ray.shutdown()
    assert counts["done"] == len(spec.trials()) == 6
    assert results(tmp_path / "ray") == results(tmp_path / "local")


# ------------------------------------------------------------------------------------- the report
def _result(eval_curve, train_loss):
    return {"curve": [1.0] * 40, "train_loss": train_loss, "test_loss": train_loss, "test_acc": 0.5,
            "step_ms": 2.0, "optimizer_ms": 1.0, "eval_steps": [0, 10, 20, 30, 40], "eval_curve": eval_curve,
            "diverged": False, "wall_s": 0.1}


def test_speedups_steps_to_the_baseline_and_grid_edges_match_hand_computed_curves(tmp_path):
    spec = parse_sweep(tiny(steps=40, seeds=1, eval_every=10, tasks=[DIGITS_MLP], optimizers={
        "adam": {"kind": "adam", "grid": {"lr": [0.01, 0.1, 1.0]}},
        "mid": {"kind": "sgd", "grid": {"lr": [1.0, 2.0]}, "default": {"lr": 1.0}},
        "never": {"kind": "sgd", "grid": {"lr": [1.0]}},
        "zero": {"kind": "sgd", "grid": {"lr": [1.0]}}}))
    curves = {("adam", 0.01): ([4, 3.9, 3.8, 3.7, 3.6], 3.6), ("adam", 0.1): ([4, 3, 2, 1.5, 1.0], 1.0),
              ("adam", 1.0): ([4, 2.5, 2.4, 2.3, 2.2], 2.2),  # tuned: 4, 2.5, 2, 1.5, 1.0
              ("mid", 1.0): ([4, 3, 2.5, 2.2, 2.0], 2.0),  # tuned Adam reaches 2.0 at step 20 of 40
              ("mid", 2.0): ([4, 3, 2.8, 2.6, 2.5], 2.5),  # reached at step 10
              ("never", 1.0): ([4, 2, 1, 0.7, 0.5], 0.5),  # below tuned Adam's best: never reached
              ("zero", 1.0): ([4, 5, 6, 7, 8], 8.0)}  # worse than the start: reached at step 0
    store = SweepStore(tmp_path)
    for (name, lr), (curve, loss) in curves.items():
        trial = Trial("digits-mlp", name, {"lr": lr}, 0)
        store.record(trial, spec.meaning(trial), _result(curve, loss))
    store.set_definition(spec)
    task = summarize(spec, store)["tasks"]["digits-mlp"]
    assert task["adam"]["best"] == "lr=0.1" and task["adam"]["edge"] == []
    assert task["mid"]["best"] == "lr=1" and task["mid"]["edge"] == ["lr"]
    assert task["mid"]["best_speedup"] == 0.5 and task["mid"]["default_speedup"] == 0.5
    assert task["never"]["best_speedup"] is None and task["zero"]["best_speedup"] == 0.0
    assert task["adam"]["best_speedup"] == 1.0
    # steps to tuned Adam's final loss (1.0) on the optimizer's own running minimum
    assert task["never"]["steps_to_baseline"] == 20 and task["never"]["seconds_to_baseline"] == pytest.approx(0.04)
    assert task["mid"]["steps_to_baseline"] is None
    # final train loss over tuned Adam's (1.0) and, for the default setting, over Adam's default (none here)
    assert task["mid"]["best_vs_tuned_baseline"] == 2.0 and task["never"]["best_vs_tuned_baseline"] == 0.5
    assert task["mid"]["default_vs_tuned_baseline"] == 2.0 and "default_vs_baseline_default" not in task["mid"]
    paths = write_report(tmp_path)
    table = paths["markdown"].read_text()
    assert "| digits-mlp | mid | lr=1 (edge: lr) |" in table and "| never (tuned) | 1 | > 1" in table
    assert "| digits-mlp | never | lr=1 | 0.5000 | 0.5000 |" in table  # one seed: a value, no spread
    assert "- never: tuned ≤ tuned baseline on 1 of 1" in table and "- mid: default ≤ tuned baseline on 0 of 1" in table
    assert {"curves", "speedups", "profile", "csv"} <= set(paths) and all(p.stat().st_size for p in paths.values())


def test_the_report_counts_each_optimizers_trials_per_machine_and_old_trials_apart(tmp_path):
    spec = parse_sweep(tiny(steps=40, seeds=2, eval_every=10, tasks=[DIGITS_MLP], optimizers={
        "adam": {"kind": "adam", "grid": {"lr": [0.01, 0.1]}}, "sgd": {"kind": "sgd", "grid": {"lr": [1.0]}}}))
    here = {"cpu": "AMD EPYC 7B13", "cores": 2, "torch_threads": 1}
    there = {"cpu": "Intel Xeon", "cores": 16, "torch_threads": 8}
    where = {("adam", 0.01, 0): here, ("adam", 0.01, 1): here, ("adam", 0.1, 0): there, ("adam", 0.1, 1): None,
             ("sgd", 1.0, 0): here, ("sgd", 1.0, 1): here}
    store = SweepStore(tmp_path)
    for (name, lr, seed), machine in where.items():
        trial = Trial("digits-mlp", name, {"lr": lr}, seed)
        result = _result([4, 3, 2, 1, 0.5], 0.5)
        if machine is not None:  # None: a trial recorded before trials named their machine
            result["machine"] = machine
        store.record(trial, spec.meaning(trial), result)
    store.set_definition(spec)
    assert summarize(spec, store)["machines"] == {
        "adam": {"AMD EPYC 7B13 (2 cores), 1 thread": 2, "Intel Xeon (16 cores), 8 threads": 1, NOT_RECORDED: 1},
        "sgd": {"AMD EPYC 7B13 (2 cores), 1 thread": 2}}
    table = write_report(tmp_path)["markdown"].read_text()
    assert "| adam | Intel Xeon (16 cores), 8 threads | 1 |" in table and f"| adam | {NOT_RECORDED} | 1 |" in table


def test_groups_of_replicates_against_hand_values_and_a_comparison_that_must_find_no_difference(tmp_path):
    optimizers = {"adam": {"kind": "adam", "grid": {"lr": [0.1]}, "default": {"lr": 0.1}},
                  **{f"{arm}{i}": {"kind": "sgd", "grid": {"lr": [1.0, 2.0]}, "default": {"lr": 1.0}}
                     for arm in "ab" for i in range(3)}}
    groups = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"]}
    spec = parse_sweep(tiny(steps=40, seeds=1, eval_every=10, tasks=[DIGITS_MLP, "paper-cnn-x2-mnist"],
                            optimizers=optimizers, groups=groups))
    assert SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    old = spec.to_dict()
    del old["groups"]  # a run directory written before groups existed
    assert SweepSpec.from_dict(old).groups == {}
    # default-setting final losses; Adam's default ends at 2 on the first task and at 1 on the second
    finals = {"adam": (2.0, 1.0), "a0": (1.0, 1.0), "a1": (1.0, 2.0), "a2": (2.0, 1.0),
              "b0": (4.0, 1.1), "b1": (4.0, 0.9), "b2": (4.4, 1.0)}
    store = SweepStore(tmp_path)
    for name, losses in finals.items():
        for task, loss in zip(("digits-mlp", "paper-cnn-x2-mnist"), losses):
            for lr in ([0.1] if name == "adam" else [1.0, 2.0]):  # lr 2 is better, but not the default
                trial = Trial(task, name, {"lr": lr}, 0)
                final = loss if lr != 2.0 else loss / 10
                store.record(trial, spec.meaning(trial), _result([4, 3, 2, 1, final], final))
    store.set_definition(spec)
    summary = summarize(spec, store)
    a = summary["groups"]["a"]
    first = a["tasks"]["digits-mlp"]
    assert [r["vs_baseline_default"] for r in first["members"].values()] == [0.5, 0.5, 1.0]
    assert first["train_loss"]["mean"] == pytest.approx(4 / 3) and first["train_loss"]["std"] == pytest.approx(
        math.sqrt(1 / 3))
    # each member's geometric mean over the two tasks: sqrt(0.5 * 1), sqrt(0.5 * 2), sqrt(1 * 1)
    assert list(a["overall"]["members"].values()) == pytest.approx([math.sqrt(0.5), 1.0, 1.0])
    comparison = summary["group_comparison"]
    # b ends at about twice a's loss on the first task, every seed: a lower, p small
    task = comparison["tasks"]["digits-mlp"]
    assert task["verdict"] == "a lower" and task["p"] < 0.05
    assert task["difference"] == pytest.approx(statistics.mean(math.log(r) for r in (0.5, 0.5, 1.0))
                                               - statistics.mean(math.log(r) for r in (2.0, 2.0, 2.2)))
    # negative control: on the second task the groups' spreads overlap, so no difference may be claimed
    assert comparison["tasks"]["paper-cnn-x2-mnist"]["verdict"] == "no measurable difference"
    assert comparison["overall"]["tasks"] == 2
    alone = compare_groups(group_summary(summary["tasks"], {"a": ["a0"], "b": ["b0", "b1"]}), "a", "b")
    assert alone["tasks"]["digits-mlp"]["verdict"].startswith("not testable")  # one seed is not a sample
    one = group_summary(summary["tasks"], {"a": ["a0"]})["a"]["tasks"]["digits-mlp"]
    assert one["train_loss"] == {"mean": 1.0, "std": None}  # a single member has no spread to show
    table = write_report(tmp_path)["markdown"].read_text()
    assert "| a | digits-mlp | 3 of 3 | 1.3333 ± 0.5774 | 0.667 ± 0.289 |" in table
    assert "| paper-cnn-x2-mnist |" in table and "no measurable difference |" in table


def test_welch_test_and_the_incomplete_beta_against_closed_forms_and_scipy():
    for x in (0.0, 0.2, 0.7, 1.0):
        assert regularized_incomplete_beta(x, 1, 1) == pytest.approx(x)
        assert regularized_incomplete_beta(x, 3.5, 1) == pytest.approx(x ** 3.5)
    assert regularized_incomplete_beta(0.5, 7.3, 7.3) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="x must lie"):
        regularized_incomplete_beta(1.5, 1, 1)
    # t with 2 degrees of freedom has the closed-form two-sided p = 1 - t / sqrt(2 + t^2); equal
    # sizes and variances give df = 2 (n - 1)
    test = welch_test([0.0, 2.0], [1.0, 5.0])  # variances 2 and 8: t = -2 / sqrt(5), df = 100 / 68
    assert test["t"] == pytest.approx(-2 / math.sqrt(5)) and test["df"] == pytest.approx(100 / 68)
    test = welch_test([0.0, 1.0], [2.0, 3.0])  # t = -2 / sqrt(1/4 + 1/4) = -sqrt(8)
    assert test["df"] == pytest.approx(2.0) and test["p"] == pytest.approx(1 - math.sqrt(8) / math.sqrt(2 + 8))
    assert welch_test([1.0], [2.0, 3.0])["p"] is None and welch_test([1.0, 1.0], [2.0, 2.0])["p"] is None
    scipy = pytest.importorskip("scipy.stats")
    generator = torch.Generator().manual_seed(0)
    for n1, n2 in ((3, 3), (3, 5), (8, 4)):
        x = (torch.randn(n1, generator=generator)).tolist()
        y = (torch.randn(n2, generator=generator) * 2 + 1).tolist()
        reference = scipy.ttest_ind(x, y, equal_var=False)
        assert welch_test(x, y)["p"] == pytest.approx(reference.pvalue, rel=1e-9)


def test_aggregates_and_edge_helpers_against_hand_values():
    assert edge_of_grid({"lr": [0.1, 0.01, 1.0], "wd": [0]}, {"lr": 0.01, "wd": 0}) == ["lr"]
    assert edge_of_grid({"opt": ["a", "b", "c"]}, {"opt": "b"}) == []
    assert first_step_reaching([3, 2, 2.5, 1], [0, 1, 2, 3], 2.2) == 1
    assert first_step_reaching([3, math.nan, 1], [0, 1, 2], 0.5) is None
    assert interquartile_mean([1, 2, 3, 4]) == 2.5 and interquartile_mean(list(range(1, 9))) == 4.5
    assert interquartile_mean([1, 2, 3, 4, 100]) == pytest.approx(3.0)  # weights 0.75, 1, 0.75
    a = speedup_aggregates([0.5, 2.0, math.inf, 0.25])
    assert a["median"] == 1.25 and a["iqm"] == 1.25 and a["fraction_above_1"] == 0.5
    assert a["median_ci"][0] <= a["median"] <= a["median_ci"][1]
    assert a["iqm_ci"][0] <= a["iqm"] <= a["iqm_ci"][1]


def test_performance_profile_against_hand_values():
    def entry(loss):
        return {"best": "s", "settings": {"s": {"train_loss": {"mean": loss}}}}

    summary = {"tasks": {"a": {"x": entry(1.0), "y": entry(2.0)}, "b": {"x": entry(3.0), "y": entry(1.5)},
                         "c": {"x": entry(1.0), "y": entry(None)}}}  # y diverged on c
    profile = performance_profile(summary)
    # ratios to the best on each task: x 1, 2, 1; y 2, 1, inf
    assert profile["x"][0] == profile["y"][0] == pytest.approx([1.0, 2.0, 2.2])
    assert profile["x"][1] == [2 / 3, 1.0, 1.0] and profile["y"][1] == [1 / 3, 2 / 3, 2 / 3]


@pytest.mark.slow
def test_the_heldout_sweep_runs_the_trials_of_heldout_py():
    """benchmarks/sweeps/heldout.yaml's trials are those of benchmarks/heldout.py (train_with): same
    initialisation, batches and curves, the sweep's step-0 point aside."""
    from l2o_graphs import NeuralGraphOptimizer
    from l2o_graphs.sweep.trial import run_trial
    from l2o_graphs.tasks.train import HELDOUT_TASKS, train_with

    data = yaml.safe_load((REPO / "benchmarks/sweeps/heldout.yaml").read_text())
    data.update(steps=20, eval_every=10)
    data["optimizers"]["ng-gnn"]["weights"] = str(REPO / data["optimizers"]["ng-gnn"]["weights"])
    spec = parse_sweep(data)
    task = "mlp-784-128-128-10-mnist"
    weights = spec.optimizer("ng-gnn").weights
    for optimizer, setting, make in (
            ("adam", {"lr": 1e-3}, lambda m: torch.optim.Adam(m.parameters(), lr=1e-3)),
            ("ng-gnn", {"lr": 3}, lambda m: NeuralGraphOptimizer(m, weights=weights, lr=3))):
        swept = run_trial(spec.to_dict(), {"task": task, "optimizer": optimizer, "setting": setting, "seed": 2})
        direct = train_with(HELDOUT_TASKS[task], make, 20, seed=2, eval_every=10)
        assert swept["curve"] == direct["curve"] and swept["train_loss"] == direct["train_loss"]
        assert swept["eval_steps"] == [0, 10, 20] and swept["eval_curve"][1:] == direct["eval_curve"]


@pytest.mark.slow
def test_merge_rename_argument_must_be_old_equals_new(tmp_path, capsys):
    from l2o_graphs.cli import main

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny()))
    for bad in ("candidate", "=ng-gnn", "candidate="):
        with pytest.raises(SystemExit) as exit_info:
            main(["sweep", "merge", str(path), str(tmp_path / "old"), "--rename", bad])
        assert exit_info.value.code == 2 and "expected OLD=NEW" in capsys.readouterr().err
    (tmp_path / "old").mkdir()
    run_sweep(parse_sweep(tiny(optimizers={"sgd": tiny()["optimizers"]["sgd"]})), tmp_path / "old",
              workers=1, threads=1, progress=False)
    code = main(["sweep", "merge", str(path), str(tmp_path / "old"), "--run-dir", str(tmp_path / "new"),
                 "--rename", "sgd=typo"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot rename to 'typo'" in err and len(err.strip().splitlines()) == 1
