# `make demo` and `make test` each bring .venv up to date first (quick when nothing changed).
.PHONY: setup demo test test-fast bench clean-venv

setup:
	@bash scripts/setup_env.sh

demo: setup
	.venv/bin/l2o-graphs demo

test: setup
	.venv/bin/python -m pytest -q

# the day-to-day subset: every test but those marked slow (under a minute on a 2-core machine)
test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow"

bench: setup
	.venv/bin/python benchmarks/graph_cost.py

clean-venv:
	rm -rf .venv
