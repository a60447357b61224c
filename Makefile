# Two commands on a fresh machine (README): `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: setup browser-deps run demo serve test lint bench fuzz fuzz-merge clean

# setup.py builds the optional native fan-out core (workers/_native.c) in place when gcc and
# the Python headers are there; `make test` requires it (TUREEN_REQUIRE_NATIVE=1), and atheris
# for the fuzz tier (TUREEN_REQUIRE_ATHERIS=1: a missing install fails instead of skipping).
$(STAMP): pyproject.toml setup.py workers/_native.c workers/_native_rx.c workers/_native_pipe.c workers/_native_loop.c
	scripts/install-build-deps.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test,fast]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium (apt), the npm packages (npm ci) and the demo bundle (esbuild); idempotent.
browser-deps:
	scripts/install-browser-deps.sh

# The first command: the server and the demo page together (`tureen demo` starts its own
# `tureen serve`), after building the page's bundle (npm ci + esbuild, no browser download);
# it prints the page's URL to open in two tabs. Its options: `make run ARGS="--port 8081"`
# (`tureen demo --help`). `make demo` is the same.
run: setup
	scripts/install-browser-deps.sh --no-chromium
	$(VENV)/bin/tureen demo $(ARGS)

demo: run

# The server alone (control API on tcp://127.0.0.1:4477), e.g. `make serve ARGS="--workers 4"`.
serve: setup
	$(VENV)/bin/tureen serve $(ARGS)

test: setup browser-deps
	scripts/install-test-deps.sh
	# clients/node's packages first: the browser tier runs its v2 app (ws, mediasoup -> .).
	cd clients/node && npm ci --no-audit --no-fund --loglevel=error
	$(VENV)/bin/ruff check .
	TUREEN_REQUIRE_NATIVE=1 TUREEN_REQUIRE_ATHERIS=1 $(VENV)/bin/pytest -n auto --dist loadfile
	cd clients/node && TUREEN_PYTHON=$(abspath $(PY)) npm test --silent

# The forwarding benchmark (docs/benchmarks.md): `make bench`, or `make bench ARGS=--quick`.
# Needs gcc (it compiles its C load tools); matplotlib comes from the optional `bench` extra.
# Its `hosts` scenario needs root (network namespaces; skipped with the reason otherwise).
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PIP) install --quiet -e '.[test,fast,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks.run $(ARGS)

# Coverage-guided fuzzing with atheris (docs/fuzzing.md): each target in turn for FUZZ_TIME
# seconds, adding the inputs that reach new code to tests/fuzz/corpus/<target>/; a failing
# input is written to test-output/fuzz/ and stops the run. `make test` runs the same targets
# a bounded number of iterations. E.g. `make fuzz FUZZ_TARGETS="room demux" FUZZ_TIME=600`,
# or libFuzzer flags: `make fuzz ARGS="-max_total_time=600 -jobs=2"`.
FUZZ_TARGETS ?= rtp rtcp stun demux tcp_framing wire capabilities room fanout
FUZZ_TIME ?= 60

fuzz: setup
	@for t in $(FUZZ_TARGETS); do \
		echo "== fuzz $$t ($(FUZZ_TIME) s)"; \
		$(PY) -m tests.fuzz $$t -max_total_time=$(FUZZ_TIME) $(ARGS) || exit 1; \
	done

# Shrinks each target's corpus to the inputs that keep its coverage (libFuzzer -merge=1);
# seed-*, crash-* and other named files always stay.
fuzz-merge: setup
	@for t in $(FUZZ_TARGETS); do $(PY) -m tests.fuzz.merge $$t || exit 1; done

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info workers/_native*.so node_modules clients/node/node_modules demo/static/bundle.js demo/static/bundle.js.map test-output
