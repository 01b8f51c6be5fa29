"""Meta-validation: scored on tasks of its own, best.pt is the best-scoring network, the schedule of
evaluations survives a resume, and a run that never beats its initialisation says so."""
import json

import pytest
import torch

from l2o_graphs.meta import MetaConfig, MetaTrainer
from l2o_graphs.meta.trainer import BEST, VALIDATION, validated_weights
from l2o_graphs.meta.validation import VALIDATION_TASKS, validate
from l2o_graphs.optim import load_weights
from l2o_graphs.tasks.train import HELDOUT_TASKS, is_heldout


def _config(**overrides):
    base = dict(net="ng-gnn", net_config={"update": "adam-scaled"}, suite="digits-mlp", estimator="pes",
                outer_steps=6, meta_batch=2, unroll=4, trajectory_length=(8, 12), warmup=1, lr=3e-2,
                checkpoint_every=3, device="cpu", validate_every=2, validation_steps=15,
                validation_tasks=["mlp-784-64-32-10-tanh-fmnist"])
    return MetaConfig(**{**base, **overrides})


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / VALIDATION).read_text().splitlines()]


def test_validation_tasks_are_neither_heldout_nor_tiny():
    assert not any(is_heldout(spec) for spec in VALIDATION_TASKS.values())
    held = {(str(h.architecture), h.dataset) for h in HELDOUT_TASKS.values()}
    assert all((str(v.architecture), v.dataset) not in held for v in VALIDATION_TASKS.values())
    assert all(not spec.dataset.endswith("8x8") and spec.dataset != "digits" for spec in VALIDATION_TASKS.values())


def test_untrained_zero_init_net_scores_adams_level():
    from l2o_graphs.nn import build_net

    result = validate(build_net("ng-gnn", update="adam-scaled"), ["mlp-784-64-32-10-tanh-fmnist"], steps=15)
    assert abs(result["score"]) < 1e-5  # it is Adam at 1e-3, the reference


@pytest.mark.slow
def test_step_multiplier_reaches_the_optimizer():
    from l2o_graphs.nn import build_net

    """Untrained, the rule is Adam at 1e-3: at lr=1 it scores Adam's level, at lr=3 it is Adam at
    3e-3, which on 15 steps of this MLP gets further (a negative score)."""
    net = build_net("ng-gnn", update="adam-scaled")
    at_one = validate(net, ["mlp-784-64-32-10-tanh-fmnist"], steps=15)["score"]
    at_three = validate(net, ["mlp-784-64-32-10-tanh-fmnist"], steps=15, lr=3.0)["score"]
    assert abs(at_one) < 1e-3 and at_three < -0.01


@pytest.mark.slow
def test_worst_is_the_worst_tasks_mean_log_ratio():
    from l2o_graphs.nn import build_net

    net = build_net("ng-gnn", update="adam-scaled")
    with torch.no_grad():
        net.edge_dec_out.bias.fill_(2.0)  # a much larger step than Adam's: the ratios differ by task
        net.node_dec_out.bias.fill_(2.0)
    tasks = ["mlp-784-64-32-10-tanh-fmnist", "cnn-8-16-16-k5-flatten-silu-mnist"]
    result = validate(net, tasks, steps=6, seeds=2)
    ratios = [result["tasks"][t]["log_ratio"] for t in tasks]
    assert result["worst"] == max(ratios) and ratios[0] != ratios[1]
    assert result["score"] == pytest.approx(sum(ratios) / 2)


@pytest.mark.slow
def test_best_checkpoint_is_the_best_scoring_network(tmp_path):
    trainer = MetaTrainer(_config(), tmp_path / "run")
    trainer.run(progress=False)
    rows = _rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [0, 2, 4, 6]
    best = min(rows, key=lambda r: r["score"])
    blob = torch.load(tmp_path / "run" / BEST, weights_only=True)
    assert blob["metadata"]["outer_steps"] == best["step"]
    assert blob["metadata"]["validation_score"] == pytest.approx(best["score"])
    assert trainer.validation["best_step"] == best["step"]
    # the saved network scores what was logged: it is the network of that step
    again = validate(load_weights(tmp_path / "run" / BEST), ["mlp-784-64-32-10-tanh-fmnist"], steps=15)
    assert again["score"] == pytest.approx(best["score"], abs=1e-6)
    assert len({round(r["score"], 8) for r in rows}) > 1  # meta-training changed the network
    # every validated network is kept, and best.pt is the one of the best step
    for row in rows:
        kept = torch.load(validated_weights(tmp_path / "run", row["step"]), weights_only=True)
        assert kept["metadata"]["outer_steps"] == row["step"]
    kept = torch.load(validated_weights(tmp_path / "run", best["step"]), weights_only=True)
    assert all(torch.equal(kept["state_dict"][k], v) for k, v in blob["state_dict"].items())
    others = [r["step"] for r in rows if r["step"] != best["step"]]
    other = torch.load(validated_weights(tmp_path / "run", others[-1]), weights_only=True)
    assert not all(torch.equal(other["state_dict"][k], v) for k, v in blob["state_dict"].items())


@pytest.mark.slow
def test_validation_schedule_survives_resume(tmp_path):
    MetaTrainer(_config(), tmp_path / "straight").run(progress=False)
    MetaTrainer(_config(), tmp_path / "killed").run(progress=False, stop_after=5)  # validated at 4, checkpoint at 3
    resumed = MetaTrainer(_config(), tmp_path / "killed", resume=True)
    assert resumed.step == 3 and resumed.validation["last_step"] == 2
    resumed.run(progress=False)
    straight, killed = _rows(tmp_path / "straight"), _rows(tmp_path / "killed")
    assert [r["step"] for r in killed] == [0, 2, 4, 6]  # step 4's row, logged before the kill, once
    for a, b in zip(straight, killed):
        assert a["score"] == pytest.approx(b["score"], abs=1e-7)


@pytest.mark.slow
def test_run_that_never_beats_its_initialisation_says_so(tmp_path):
    with pytest.warns(RuntimeWarning, match="no network better than its initialisation"):
        MetaTrainer(_config(lr=1e-12, outer_steps=2), tmp_path / "run").run(progress=False)


def test_bad_validation_settings_are_refused():
    with pytest.raises(ValueError, match="'validation_tasks'"):
        _config(validation_tasks=["mlp-784-128-128-10-mnist"])  # a held-out task is not a validation task
    with pytest.raises(ValueError, match="'validate_every'"):
        _config(validate_every=-1)
    with pytest.raises(ValueError, match="'validation_metric'"):
        _config(validation_metric="median")


def test_meta_training_never_draws_a_validation_task():
    from l2o_graphs.meta.trainer import _new_trajectory
    from l2o_graphs.meta.validation import is_validation
    from l2o_graphs.tasks.suites import parse_suite

    suite = parse_suite({"name": "near-validation", "datasets": ["fashion_mnist"], "batch_sizes": [64],
                         "architectures": [{"kind": "mlp", "hidden_layers": [2, 2], "width": [32, 64],
                                            "activations": ["tanh"]}]})
    gen = torch.Generator().manual_seed(0)
    plain = [suite.sample(gen) for _ in range(6000)]
    assert any(is_validation(spec) for spec in plain)  # the suite does draw it...
    sampler = torch.Generator().manual_seed(0)
    drawn = [_new_trajectory(suite, MetaConfig(), sampler).spec for _ in range(6000)]
    assert not any(is_validation(spec) for spec in drawn)  # ...and meta-training skips it


def test_mean_ahead_prefers_any_checkpoint_ahead_on_every_task():
    from l2o_graphs.meta.validation import selection_score

    ahead_a = {"score": -0.30, "worst": -0.02}
    ahead_b = {"score": -0.10, "worst": -0.08}
    behind = {"score": -0.50, "worst": 0.01}  # best mean, but one task behind Adam
    scores = {name: selection_score(r, "mean-ahead") for name, r in
              (("a", ahead_a), ("b", ahead_b), ("behind", behind))}
    assert min(scores, key=scores.get) == "a" and scores["behind"] > scores["b"]
    assert selection_score(behind, "mean") == -0.50 and selection_score(behind, "worst") == 0.01
    with pytest.raises(ValueError, match="unknown validation metric 'median'"):
        selection_score(behind, "median")


def test_margin_demands_a_lead_on_every_task():
    from l2o_graphs.meta.validation import selection_score

    narrow = {"score": -0.40, "worst": -0.02}  # ahead everywhere, but by less than the margin
    clear = {"score": -0.15, "worst": -0.07}
    assert selection_score(narrow, "mean-ahead") < selection_score(clear, "mean-ahead")  # no margin: narrow wins
    with_margin = {name: selection_score(r, "mean-ahead", margin=0.05) for name, r in (("narrow", narrow), ("clear", clear))}
    assert min(with_margin, key=with_margin.get) == "clear"
    assert with_margin["narrow"] == -0.02 and with_margin["clear"] == -0.15
    assert selection_score(narrow, "mean", margin=0.05) == -0.40  # the margin is the floor's, not the mean's
    with pytest.raises(ValueError, match="margin must be >= 0"):
        selection_score(clear, "mean-ahead", margin=-0.01)


def test_select_validated_applies_a_rule_after_the_run():
    from l2o_graphs.meta.validation import select_validated

    rows = [{"step": 0, "mean": 0.007, "worst": 0.021, "score": 0.021},
            {"step": 80, "mean": -0.173, "worst": -0.047, "score": -0.047},
            {"step": 160, "mean": -0.238, "worst": -0.053, "score": -0.053},
            {"step": 240, "mean": -0.343, "worst": -0.025, "score": -0.025}]
    assert select_validated(rows, "worst") == 160
    assert select_validated(rows, "mean") == 240
    assert select_validated(rows, "mean-ahead") == 240
    assert select_validated(rows, "mean-ahead", margin=0.05) == 160
    assert select_validated(rows[:1], "mean-ahead", margin=0.05) == 0  # nothing passes: the least behind
    assert select_validated(rows + [dict(rows[2], step=320)], "worst") == 160  # ties: the earliest
    with pytest.raises(ValueError, match="no validation rows"):
        select_validated([], "worst")
