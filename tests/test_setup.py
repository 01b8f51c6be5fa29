"""The environment the set-up builds: every dependency imports, the console script runs."""
import io
import subprocess
import sys
from pathlib import Path

import pytest


def test_learn2learn_imports():
    import learn2learn
    from learn2learn.data import MetaDataset, TaskDataset  # noqa: F401 - the compiled Cython extensions

    assert learn2learn.__version__ == "0.2.0"


def test_torch_geometric_and_plotting_import():
    import matplotlib.figure
    import torch_geometric
    import tqdm  # noqa: F401

    assert int(torch_geometric.__version__.split(".")[0]) >= 2
    figure = matplotlib.figure.Figure()  # headless, as the library's plots: drawn to a file, never shown
    figure.add_subplot().plot([0, 1], [1, 0])
    png = io.BytesIO()
    figure.savefig(png, format="png")
    assert png.getvalue().startswith(b"\x89PNG")


def _console_script() -> str:
    script = Path(sys.executable).with_name("l2o-graphs")
    assert script.exists(), "the console script is not installed in this environment"
    return str(script)


@pytest.mark.slow
@pytest.mark.parametrize("command", [[], ["demo"], ["graph"], ["data"], ["meta-train"], ["plot"]])
def test_help_for_every_subcommand(command):
    out = subprocess.run([_console_script(), *command, "--help"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("usage: l2o-graphs")


@pytest.mark.slow
def test_graph_command_runs():
    out = subprocess.run([_console_script(), "graph", "--model", "residual-cnn"], capture_output=True,
                         text=True, check=True)
    assert "round trip exact" in out.stdout and "residual=" in out.stdout


@pytest.mark.slow
def test_unknown_architecture_is_rejected():
    out = subprocess.run([_console_script(), "graph", "--model", "nope"], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice" in out.stderr
