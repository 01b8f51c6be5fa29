"""Benchmark sweeps: any optimizer on any task over grids and seeds, recorded in a SQLite
database, run by local worker processes or on a Ray cluster, reported as tables and plots.

``l2o-graphs sweep run FILE.yaml`` / ``merge FILE.yaml SOURCE_DIR`` / ``status RUN_DIR`` / ``report RUN_DIR``
on the command line; :func:`load_sweep`, :func:`run_sweep`, :func:`merge_sweep`, :func:`sweep_status`
and :func:`write_report` in Python.
"""
from l2o_graphs.sweep.engine import merge_sweep, run_sweep, sweep_status
from l2o_graphs.sweep.report import summarize, write_report
from l2o_graphs.sweep.spec import SweepError, SweepSpec, Trial, load_sweep, parse_sweep

__all__ = ["SweepError", "SweepSpec", "Trial", "load_sweep", "merge_sweep", "parse_sweep", "run_sweep", "sweep_status",
           "summarize", "write_report"]
