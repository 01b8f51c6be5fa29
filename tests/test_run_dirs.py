"""Run directories lose no data: an existing run is never overwritten silently, ``--resume`` resumes
or says why, one process at a time writes a folder (a real lock, released when its holder is
killed), torn log lines are dropped on resume, a diverging run stops before saving; the CLI answers
user errors with one line and exit status 2."""
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from l2o_graphs.cache import FolderBusy, folder_lock, read_jsonl
from l2o_graphs.cli import main
from l2o_graphs.meta import MetaConfig, MetaTrainer
from l2o_graphs.meta.plot import plot_run
from l2o_graphs.meta.trainer import MetaTrainingDiverged
from l2o_graphs.sweep import parse_sweep, run_sweep
from l2o_graphs.zoo import ZooSpec, make_zoo

REPO = Path(__file__).resolve().parents[1]
CONFIG = dict(net="ff", suite="digits-mlp", outer_steps=4, meta_batch=2, unroll=2, trajectory_length=[4, 8],
              warmup=1, lr=1e-3, checkpoint_every=2, device="cpu")


def steps_logged(run_dir):
    return [row["step"] for row in read_jsonl(run_dir / "metrics.jsonl")]


def test_an_existing_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    run = tmp_path / "run"
    MetaTrainer(MetaConfig(**CONFIG), run).run(progress=False)
    with pytest.raises(ValueError, match="holds a meta-training run"):
        MetaTrainer(MetaConfig(**CONFIG), run)
    MetaTrainer(MetaConfig(**CONFIG), run, overwrite=True).run(progress=False)
    assert steps_logged(run) == [1, 2, 3, 4]  # started again, nothing appended twice
    with pytest.raises(ValueError, match="nothing to resume"):
        MetaTrainer(MetaConfig(**CONFIG), tmp_path / "empty", resume=True)


def test_a_torn_log_line_is_dropped_on_resume_and_plot_reads_past_it(tmp_path):
    run = tmp_path / "run"
    MetaTrainer(MetaConfig(**CONFIG), run).run(progress=False, stop_after=3)  # checkpoint at 2
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "meta_lo')  # killed mid-write
    plot_run(run)
    MetaTrainer(MetaConfig(**CONFIG), run, resume=True).run(progress=False)
    assert steps_logged(run) == [1, 2, 3, 4]
    assert all(json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())


HOLD = """
import sys, time
from l2o_graphs.cache import folder_lock
with folder_lock(sys.argv[1], "a test"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_folder_held_by_another_process_is_refused_until_that_process_dies(tmp_path):
    folder = tmp_path / "shared"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == b"held"
    try:
        with pytest.raises(FolderBusy, match=f"pid {holder.pid}"):
            MetaTrainer(MetaConfig(**CONFIG), folder).run(progress=False)
        sweep = parse_sweep({"steps": 2, "tasks": [{"name": "t", "architecture": {"kind": "mlp", "hidden": [4],
                             "activation": "relu"}, "dataset": "digits"}], "optimizers": {"sgd": {"kind": "sgd"}}})
        with pytest.raises(FolderBusy):
            run_sweep(sweep, folder, progress=False)
        with pytest.raises(FolderBusy):
            make_zoo(ZooSpec(count=1, steps=(2, 2), checkpoints=(1.0,), eval_images=8, batch_size=4), folder,
                     progress=False)
        assert not (folder / "metrics.jsonl").exists() and not (folder / "config.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with folder_lock(folder, "after"):  # the kernel released the dead holder's lock
        pass
    MetaTrainer(MetaConfig(**CONFIG), folder).run(progress=False)
    assert steps_logged(folder) == [1, 2, 3, 4]


def test_a_run_whose_weights_stop_being_finite_stops_and_keeps_its_last_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    trainer = MetaTrainer(MetaConfig(**{**CONFIG, "outer_steps": 6}), run)
    original = MetaTrainer.outer_step

    def poisoned(self):
        metrics = original(self)
        if self.step == 3:
            with torch.no_grad():
                self.trainable[0].fill_(math.nan)
        return metrics

    monkeypatch.setattr(MetaTrainer, "outer_step", poisoned)
    with pytest.raises(MetaTrainingDiverged, match="outer step 3"):
        trainer.run(progress=False)
    blob = torch.load(run / "checkpoint.pt", weights_only=True)
    assert blob["step"] == 2 and all(torch.isfinite(v).all() for v in blob["net"].values())
    assert not (run / "weights.pt").exists() and steps_logged(run) == [1, 2]


def _cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def test_cli_user_errors_are_one_line_and_exit_status_2(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    run = tmp_path / "run"
    assert main(["meta-train", "--config", str(config), "--run-dir", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    cases = {
        "holds a meta-training run": ["meta-train", "--config", str(config), "--run-dir", str(run)],
        "nothing to resume": ["meta-train", "--config", str(config), "--run-dir", str(tmp_path / "none"), "--resume"],
    }
    (tmp_path / "empty.yaml").write_text("")
    cases["is empty"] = ["meta-train", "--config", str(tmp_path / "empty.yaml"), "--run-dir", str(tmp_path / "e")]
    (tmp_path / "float.yaml").write_text(yaml.safe_dump({**CONFIG, "outer_steps": 2.5}))
    cases["must be an integer"] = ["meta-train", "--config", str(tmp_path / "float.yaml"), "--run-dir",
                                   str(tmp_path / "f")]
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a zip file")
    cases["not a readable checkpoint"] = ["meta-train", "--config", str(config), "--run-dir", str(corrupt),
                                          "--resume"]
    cases["holds no sweep"] = ["sweep", "status", str(tmp_path / "nothing")]
    if not torch.cuda.is_available():
        cases["no CUDA device"] = ["meta-train", "--config", str(config), "--run-dir", str(tmp_path / "g"),
                                   "--device", "cuda"]
    for expected, argv in cases.items():
        code, err = _cli(argv, capsys)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (expected, err)
        assert "Traceback" not in err and "weights_only=False" not in err
    with pytest.raises(ValueError, match="holds a meta-training run"):
        main(["--debug", "meta-train", "--config", str(config), "--run-dir", str(run)])
    for bad in (["meta-train", "--run-dir", str(run), "--threads", "0"], ["sweep", "run", "x.yaml", "--workers", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            main(bad)
        assert exit_info.value.code == 2
    # the refused commands wrote nothing into the existing run
    assert steps_logged(run) == [1, 2, 3, 4]


def test_cli_stop_at_checkpoints_that_step_and_resume_finishes_the_same_run(tmp_path, capsys):
    """--stop-at keeps the schedule of the full run: stopped at step 3 (no checkpoint is due there)
    and resumed, the run ends where a run straight through ends."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "outer_steps": 4, "checkpoint_every": 2}))
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["meta-train", "--config", str(config), "--run-dir", str(straight), "--no-progress"]) == 0
    assert main(["meta-train", "--config", str(config), "--run-dir", str(stopped), "--no-progress", "--stop-at", "3"]) == 0
    assert "stopped at outer step 3 of 4" in capsys.readouterr().out
    assert torch.load(stopped / "checkpoint.pt", weights_only=True)["step"] == 3
    assert not (stopped / "weights.pt").exists()
    assert main(["meta-train", "--config", str(config), "--run-dir", str(stopped), "--no-progress", "--resume"]) == 0
    one = torch.load(straight / "weights.pt", weights_only=True)["state_dict"]
    two = torch.load(stopped / "weights.pt", weights_only=True)["state_dict"]
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
