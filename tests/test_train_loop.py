"""The one inner training loop, ``train_problem``: its hooks for callers that need more than a
curve (the zoo's checkpoints), and its handling of a run that diverges."""
import math

import torch
from torch import nn

from l2o_graphs.tasks.train import Problem, train_problem


def _problem() -> Problem:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    torch.manual_seed(0)
    return Problem(nn.Linear(5, 3), (x, y), (x[:16], y[:16]), batch_size=8)


def test_on_step_sees_every_step_and_the_given_batches_decide_the_run():
    seen = []
    problem = _problem()
    out = train_problem(problem, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), 5, seed=0,
                        batches=torch.Generator().manual_seed(7),
                        on_step=lambda step, model: seen.append((step, model.weight.detach().clone())))
    assert [s for s, _ in seen] == [0, 1, 2, 3, 4, 5]
    assert not torch.equal(seen[0][1], seen[-1][1]) and torch.equal(seen[-1][1], problem.model.weight)
    assert out["train_loss"] is not None and out["test_acc"] is not None
    again = _problem()
    other = train_problem(again, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), 5, seed=0)
    assert other["curve"] != out["curve"]  # another batch stream (the default is seeded from seed)
    same = _problem()
    repeat = train_problem(same, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), 5, seed=123,
                           batches=torch.Generator().manual_seed(7), final_eval=False)
    assert repeat["curve"] == out["curve"]
    assert repeat["train_loss"] is None and repeat["test_loss"] is None and repeat["test_acc"] is None


def test_a_diverged_run_stops_unless_asked_to_go_on():
    def exploding(model):
        return torch.optim.SGD(model.parameters(), lr=math.nan)  # NaN parameters after the first step

    stopped = train_problem(_problem(), exploding, 20, seed=0)
    steps = []
    kept_on = train_problem(_problem(), exploding, 20, seed=0, stop_if_diverged=False,
                            on_step=lambda step, model: steps.append(step))
    first_bad = next(i for i, v in enumerate(stopped["curve"]) if not math.isfinite(v))
    assert first_bad < 19 and all(math.isnan(v) for v in stopped["curve"][first_bad + 1:])
    assert steps == list(range(21)) and len(kept_on["curve"]) == 20
