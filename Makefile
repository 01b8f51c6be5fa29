# `make demo` and `make test` each bring .venv up to date first (quick when nothing changed).
.PHONY: setup demo test bench clean-venv

setup:
	@bash scripts/setup_env.sh

demo: setup
	.venv/bin/l2o-graphs demo

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python benchmarks/graph_cost.py

clean-venv:
	rm -rf .venv
