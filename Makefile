# One entry point for people and CI. Every target installs what it needs first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint format bench bench-etl bench-model bench-drift bench-api bench-loop bench-production bench-geo bench-explain bench-balance clean deployments

install: $(STAMP)

# requirements-dev.txt is the runtime set (requirements.txt, all the image installs) plus the
# test and dev tools.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: install
	$(BIN)/crimeflow demo

# Unit and component tests on two processes (pytest-xdist; `worksteal` lets an idle process take
# queued tests from the busy one, so a few long real-data tests do not leave a long tail), then
# the end-to-end tests one at a time: they start servers and time the loop, so they get the
# machine to themselves. Both halves always run; the target fails if either did.
test: install
	$(BIN)/python -m pytest -q -m "not e2e" -n 2 --dist worksteal --durations=15; unit=$$?; \
	$(BIN)/python -m pytest -q -m e2e --durations=15; e2e=$$?; \
	exit $$((unit | e2e))

test-fast: install
	$(BIN)/python -m pytest -q -m "not e2e and not slow" -n 2

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/check_layers.py

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: bench-etl bench-model bench-drift bench-api bench-loop bench-production bench-geo

bench-etl: install
	$(BIN)/python tests/benchmarks/bench_etl.py

# Fit time on all ten 2018 months and latency of the skops-loaded artifact (needs ../shared).
bench-model: install
	$(BIN)/python scripts/model_research.py

# Nearest station (KD-tree vs sjoin_nearest) and point-in-polygon on 200k points.
bench-geo: install
	$(BIN)/python tests/benchmarks/bench_geo.py

# Balanced variants vs plain HGB on the real 2018 split: PR-AUC, calibration, fit time (needs ../shared).
bench-balance: install
	$(BIN)/python tests/benchmarks/bench_balance.py

# A drift check on 100k current x 100k reference rows (target <= 20 s).
bench-drift: install
	$(BIN)/python tests/benchmarks/bench_drift.py

# crimeflow's API vs a typical FastAPI + MLflow pyfunc server, 16 concurrent clients.
bench-api: install
	$(BIN)/python tests/benchmarks/bench_api.py

# Latency of POST /predict with and without ?explain=true (one client), and the explainer alone.
bench-explain: install
	$(BIN)/python tests/benchmarks/bench_explain.py

# Drift event -> retrain -> gate -> API serving the new version, on 12 generated months.
bench-loop: install
	$(BIN)/python tests/benchmarks/bench_loop.py

# The production form: prediction-log capacity on PostgreSQL, API RPS with 1 and 2 workers on
# PostgreSQL + Redis (needs both on 127.0.0.1); 3-4 minutes. Sections: --only log,api.
bench-production: install
	$(BIN)/python tests/benchmarks/bench_production.py

# prefect.yaml and deployments/prefect.image.yaml from deployments/declarations.py.
deployments: install
	$(BIN)/python -m deployments.render

clean:
	rm -rf .crimeflow .pytest_cache .ruff_cache
