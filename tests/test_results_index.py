"""benchmarks/results/INDEX.md lists every result file with the command that made it, and is current."""
import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_results_index_is_current_and_every_result_names_its_command():
    spec = importlib.util.spec_from_file_location("results_index", BENCHMARKS / "results_index.py")
    index = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(index)
    text = index.render()
    assert "| `?` |" not in text  # every result file says which command made it
    assert index.INDEX.read_text() == text, "rerun: python benchmarks/results_index.py"
