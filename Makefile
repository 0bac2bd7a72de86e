# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PACKAGES := core gateway guards model_registry gpu_monitor

.PHONY: install browser demo screenshots test lint typecheck unit bench bench-serving clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: a looser requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the report's browser test (best effort: that test skips, saying
# why, where no chromium can be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	    >/dev/null 2>&1 || echo "chromium not installed: the browser tests will skip"; }

demo: install
	$(VENV)/bin/gateway demo

# The README's pictures (docs/img/), from the last demo's reports, drawn by chromium.
screenshots: install browser
	$(PY) docs/screenshots.py

lint: install
	$(VENV)/bin/ruff check $(PACKAGES) tests benchmarks

typecheck: install
	$(VENV)/bin/mypy $(PACKAGES) benchmarks

# Two workers, one local Ray instance each; a test file stays on one worker (its module
# fixtures deploy apps), and the slow e2e files are split so the workers finish together.
test: lint typecheck browser
	$(PY) -m pytest -q -p no:warnings -n 2 --dist loadfile -m "not judge_sim and not chaos and not cluster"
	$(MAKE) --no-print-directory test-cluster
	$(PY) -m pytest -q -p no:warnings -m judge_sim

unit: install
	$(PY) -m pytest -q -p no:warnings tests/unit

bench: install
	$(PY) -m benchmarks.judge_sim

# The serving benchmarks, each writing its section of benchmarks/RESULTS.md (~60 min; uses wrk
# when installed): gateway overhead vs bare Ray Serve, time to rollback, dynamic batching (the
# MLP on the CPU, then behind a simulated GPU), streaming overhead, and scaling with replicas.
bench-serving: install
	$(PY) -m benchmarks.overhead
	$(PY) -m benchmarks.rollback_time --runs 5
	$(PY) -m benchmarks.batching
	$(PY) -m benchmarks.batching --device-ms 20
	$(PY) -m benchmarks.streaming
	$(PY) -m benchmarks.scaling

clean:
	rm -rf $(VENV) .gateway .pytest_cache .mypy_cache .ruff_cache

# The judge simulation's CI-sized run (~10 min on 2 cores: 60 rollouts per A/A variant, three
# detection checks) as Markdown tables; `make bench` is the full run (~3 h on 2 cores).
.PHONY: bench-judge-quick
bench-judge-quick: install
	$(PY) -m benchmarks.judge_sim --quick --markdown

# The chaos e2e cases (challenger replica killed, supervisor killed, MLflow down, bad
# artifact; ~7 min), kept out of `make test` for CI's time; results in RESULTS.md.
.PHONY: test-chaos
test-chaos: install
	$(PY) -m pytest -q -p no:warnings -m chaos tests/e2e/gateway/test_chaos.py

# A real three-node Ray cluster on this machine (head + two workers standing in for GPU
# nodes): gateway serve --address, serve deploy, a worker node killed mid-rollout (~4 min;
# alone, after the main suite: its three raylets would crowd the workers' Ray instances).
.PHONY: test-cluster
test-cluster: install
	$(PY) -m pytest -q -p no:warnings -m cluster tests/e2e/cluster

# Chaos suite: replica, supervisor, MLflow and model faults under load (~15 min on 2 cores).
.PHONY: bench-chaos
bench-chaos: install
	$(PY) -m benchmarks.chaos

# Sustained load near capacity with a mid-run rollback, per-process RSS (~13 min).
.PHONY: bench-soak
bench-soak: install
	$(PY) -m benchmarks.soak --minutes 10

# The supervisor's requests to a real MLflow tracking server on PostgreSQL 15 (initdb, pg_ctl
# on PATH): idle, one promoted and one rolled-back rollout, by kind (~5 min).
.PHONY: bench-registry
bench-registry: install
	$(PY) -m benchmarks.registry_traffic

# How far one supervisor carries: flushes merged and judged per second and table fan-out with
# 10..1000 simulated ingress replicas, judging per ingest / coalesced / per-node aggregated,
# against Ray's own floor (~10 min on 2 cores).
.PHONY: bench-control-plane
bench-control-plane: install
	$(PY) -m benchmarks.control_plane
