# AEGIS: two commands on a fresh machine: `make run` and `make test`.
PY     ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# the install is redone when the project's build files or its C sources change
C_SOURCES := common/_ringc.c common/_ring_publish.h services/feed/_feedlane.c
BUILD_SUM := $(shell cat pyproject.toml setup.py $(C_SOURCES) | cksum | cut -d' ' -f1)
STAMP  := $(VENV)/.installed-$(BUILD_SUM)
BENCH_STAMP := $(VENV)/.bench-installed-$(BUILD_SUM)

.PHONY: setup setup-bench browser run test test-fast soak bench golden clean

# idempotent: re-installs only when pyproject.toml, setup.py or a C source changed
setup: $(STAMP)

$(STAMP): pyproject.toml setup.py $(C_SOURCES)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@echo "make: compiling the numba kernels once (SMC, candles, conflation; cached in __pycache__)"
	$(BIN)/python -c "from common import config; from services.brain.kernels import warm_kernels; import services.brain.smc.kernel; warm_kernels(config.from_dict({}))"
	rm -f $(VENV)/.installed-*
	touch $@

# the whole stack in demo mode until Ctrl+C: `aegis run` with its defaults. The local
# exchange replays a month of real Binance BTCUSDT 1m candles as trades synthesized inside
# each candle, and serves 1,500 earlier real candles as history, so the strategy is warm at
# once and signals come within minutes (common/config.py: sim.source, sim.history_bars,
# sim.candle_trades, feed.hydrate_candles). AEGIS_SIM__SOURCE=ticks make run replays the real
# tick capture instead (4,500 ticks/s, but too short for SMC signals).
run: setup
	$(BIN)/aegis run

# the dashboard's browser test drives Debian's chromium (tests/integration/test_dashboard_browser.py,
# through Playwright, never a downloaded browser). Installed here when missing, as root with
# apt-get (CI runs as root on Debian); skipped when present. Without it that test fails and says why.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing Debian's chromium for the dashboard's browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
	    || echo "make: chromium could not be installed: the browser test will fail and say so"; \
	else echo "make: $(CHROMIUM) is missing and cannot be installed here (needs root and apt-get):" \
	  "the browser test will fail and say so"; fi

# make test runs every suite on TEST_WORKERS pytest-xdist worker processes (docs/testing.md).
# --dist loadfile keeps each file in one worker (its module fixtures start once);
# --no-loadscope-reorder hands files out in collection order, where tests/conftest.py puts the
# longest files first (LONGEST_FIRST). TEST_WORKERS=0: one process, one test after the other.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: setup browser
	$(BIN)/python -m pytest -q $(XDIST)

# unit, property and fuzz tests only (about two minutes)
test-fast: setup
	$(BIN)/python -m pytest -q $(XDIST) tests/unit tests/property tests/fuzz

# opt-in long tests (soak)
soak: setup
	$(BIN)/python -m pytest -q -m slow --timeout 1800

# the benchmark extras (faster-fifo, py-spy) on top of setup; idempotent like setup. If an
# extra cannot be installed here the suite still runs and records that contender as unavailable.
setup-bench: $(BENCH_STAMP)

# NautilusTrader needs pandas < 3 (AEGIS: pandas 3): its own virtualenv, used by bench/nautilus_contender.py
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,bench]' \
	  || echo "make: bench extras not installed; the suite marks those contenders unavailable"
	(test -x .venv-nautilus/bin/python || python3 -m venv .venv-nautilus) \
	  && .venv-nautilus/bin/python -m pip install -q --disable-pip-version-check -r bench/nautilus-requirements.txt \
	  || echo "make: nautilus_trader not installed; the backtest section marks it unavailable"
	rm -f $(VENV)/.bench-installed-*
	touch $@

# the benchmark suite of issue 8 (< 10 minutes): bench/results/*.json + bench/RESULTS.md
bench: setup-bench
	$(BIN)/python -m bench

# regenerate the golden replay decisions ON PURPOSE (after a change that should change
# decisions; review the diff before committing it): docs/replay.md
golden: setup
	$(BIN)/aegis replay tests/golden/demo_240s.aegiscap --no-progress \
	  --decisions tests/golden/demo_240s.decisions.jsonl

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
