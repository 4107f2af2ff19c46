# Entry points. Each target does its own set-up on a fresh machine (Python 3.11, pip, git, gcc).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(wildcard proto/conductor/v1/*.proto)
GENERATED := $(PROTOS:.proto=_pb2.py)
ARGS ?=
PYTEST_ARGS ?=
# The coding-agent CLIs the agent supports (agent_runtime/coding_agents/), pinned: their flags and event
# streams change between releases. Installed from npm into a project-local prefix, never globally.
CODEX_VERSION := 0.169.0
CLAUDE_CODE_VERSION := 2.1.332
TOOLS := .tools/npm
TOOLS_STAMP := $(TOOLS)/.installed-codex-$(CODEX_VERSION)-claude-$(CLAUDE_CODE_VERSION)

.PHONY: demo test test-fast bench proto venv clean lint sandbox agent-clis prometheus bytecode

demo: $(STAMP) proto bytecode sandbox agent-clis
	$(BIN)/python examples/demo.py $(ARGS)

test: $(STAMP) proto bytecode sandbox agent-clis prometheus
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fast lane for a change: unit tests, the workflows on the time-skipping server with scripted
# activities, replay of recorded histories, and the claim property test with fewer examples (the counts and
# their costs: tests/workflow/harness.py). Tests over ~10 s are marked slow and left to `make test`.
# Its files are spread over FAST_WORKERS processes (pytest-xdist, a file per worker so a module's test
# server starts once): most of the lane's time is spent waiting on servers and timers, not computing, so
# three workers on two cores measured 1:24 against 2:13 in one process (load ~5).
FAST_EXAMPLES ?= 25
FAST_WORKERS ?= 3
test-fast: $(STAMP) proto bytecode
	CONDUCTOR_PROPERTY_EXAMPLES=$(FAST_EXAMPLES) $(BIN)/python -m pytest -m "not slow" -n $(FAST_WORKERS) --dist loadfile tests/unit tests/workflow tests/replay $(PYTEST_ARGS)

bench: $(STAMP) proto bytecode sandbox
	$(BIN)/python -m benchmarks $(ARGS)

# The project's own modules, compiled once. With PYTHONDONTWRITEBYTECODE=1 (set on these machines) nothing
# would write their .pyc, so every import would compile them from source: in every agent and conductor
# process, and in Temporal's workflow sandbox, which imports the workflow modules afresh for each new run.
# compileall writes them whatever that variable says; a changed source is recompiled at import as usual.
PACKAGES := activities agent_runtime benchmarks conductor_worker contracts model_gateway proto security stores tests workflows
bytecode: $(STAMP) proto
	$(BIN)/python -m compileall -q -j 0 $(PACKAGES) >/dev/null

lint: $(STAMP) proto
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# Re-record tests/histories/ from real runs (own dev server, agents, git); about 25 s. See tests/replay/README.md.
.PHONY: histories
histories: $(STAMP) proto
	$(BIN)/python -m tests.histories.record $(ARGS)

proto: $(GENERATED)

# One protoc call, rooted at the repository so generated imports read `from proto.conductor.v1 import ...`.
proto/conductor/v1/%_pb2.py: proto/conductor/v1/%.proto $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. $<

venv: $(STAMP)

# bubblewrap, the local launcher's sandbox (README "Sandbox"): installed when missing and we are root (CI,
# containers); otherwise a line saying how, and the launcher refuses until it is there or
# CONDUCTOR_SANDBOX=unsafe is set.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q bubblewrap >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1; }; }; } || \
	  echo "bubblewrap (bwrap) is missing: install it (apt-get install bubblewrap), or set CONDUCTOR_SANDBOX=unsafe for development"

# Prometheus, for the metrics test (a real server scraping the conductor; README "Metrics"): Debian's
# package, installed when missing and we are root; the test names what is missing otherwise.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; }; }; } || \
	  echo "prometheus is missing: install it (apt-get install prometheus) for tests/integration/test_metrics.py"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Codex CLI and Claude Code (about 800 MB, ~45 s from the npm registry). The stamp names the versions, so a
# version bump reinstalls; the binaries land in $(TOOLS)/node_modules/.bin (tests and the demo look there).
agent-clis: $(TOOLS_STAMP)

$(TOOLS_STAMP):
	rm -rf $(TOOLS) && mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-save --no-audit --no-fund --no-update-notifier --loglevel=error \
		@openai/codex@$(CODEX_VERSION) @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION)
	touch $@

clean:
	rm -rf $(VENV) .tools .demo-state .conductor-state proto/conductor/v1/*_pb2*.py proto/conductor/v1/*_pb2*.pyi
