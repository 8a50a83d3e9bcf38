# The same commands locally and in CI. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.10 (Rasa 3.6 refuses 3.11+). A pyenv 3.10 is used when there is one; otherwise uv finds
# or downloads a 3.10 itself (set UV_PYTHON_DOWNLOADS=never to forbid downloads).
PYENV_310 := $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.10.*/bin/python3.10)
PYTHON ?= $(if $(PYENV_310),$(lastword $(PYENV_310)),3.10)
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen --no-sync
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help install browser run train test test-fast lint bench-nlu bench-danger bench-dashboard bench clean i18n-extract i18n-update i18n-dashboard i18n-compile sms-report

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.tools/bin/uv:
	@echo ">> installing uv (the Python package manager) into .tools/"
	python3 -m venv .tools && .tools/bin/pip install --quiet --progress-bar on uv

# --compile-bytecode: the packages' .pyc files written once, at install (about 12 s). Where
# PYTHONDONTWRITEBYTECODE is set (this machine, many CI images), Python otherwise compiles Rasa,
# TensorFlow and the rest from source in every process it starts: 8 s of a `helpline run`
# start (25 -> 17 s), paid by every server the tests start.
.venv/.installed: pyproject.toml uv.lock Makefile | $(UV)
	@echo ">> installing Python 3.10 dependencies (Rasa 3.6 and friends; first time: a few minutes, ~3 GB)"
	$(UV) sync --frozen --compile-bytecode --python "$(PYTHON)"
	@touch $@

install: .venv/.installed ## install everything that is missing

# Debian's chromium, for the browser tests (Playwright drives it; Playwright's own browser
# downloads are never used), and Noto fonts so that Bengali, Burmese and Thai render in the
# dashboard's screenshots. apt-get only when something is missing; sudo when not root.
CHROMIUM ?= /usr/bin/chromium
NOTO := /usr/share/fonts/truetype/noto/NotoSansMyanmar-Regular.ttf
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser: ## install chromium and the Noto fonts (apt-get) for the browser tests, if missing
	@if [ -x "$(CHROMIUM)" ] && [ -f "$(NOTO)" ]; then \
	  echo ">> chromium is installed: $$($(CHROMIUM) --version 2>/dev/null)"; \
	else echo ">> installing chromium and fonts-noto-core with apt-get, for the browser tests (first time: a few minutes)"; \
	  $(SUDO) apt-get update -q \
	  && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-noto-core \
	  && echo ">> chromium installed: $$(/usr/bin/chromium --version 2>/dev/null)"; fi

train: install ## train the model if there is none or its inputs changed
	$(RUN) helpline train

run: install ## install, train if needed, start the helpline (in development unless HELPLINE_ENV says otherwise)
	HELPLINE_ENV=$${HELPLINE_ENV:-development} $(RUN) helpline run

# The model is trained before pytest, not by its first test: a training from nothing (6 to 20
# minutes on 2 cores with the embedding cache warm, 43 with it empty on a slow CPU) is then not
# counted against one test's timeout.
# --durations: the 25 slowest tests are printed at the end, so that a run (CI's too) says where
# the suite's minutes go.
test: install browser ## install and run the whole test suite (lint, train the model if needed, tests; 27-70 min from nothing, by CPU)
	$(RUN) ruff check bot nlu actions tests
	$(RUN) helpline train
	$(RUN) pytest -ra --durations=25

test-fast: install ## the tests that do not train a model
	$(RUN) pytest -ra -m "not slow"

lint: install ## ruff
	$(RUN) ruff check bot nlu actions tests

bench-nlu: install ## train ours and stock Rasa, evaluate on the held-out set, update docs/benchmarks.md
	$(RUN) python tests/bench/bench_nlu.py --write docs/benchmarks.md

bench-danger: install ## danger recall and false alarms per language and kind, end to end, ours next to the previous release
	$(RUN) python tests/bench/bench_danger.py --write docs/benchmarks.md

bench-dashboard: install ## seed 100,000 cases and 1,000,000 messages; time the dashboard's pages on SQLite and PostgreSQL
	$(RUN) python tests/bench/bench_dashboard.py --write docs/benchmarks.md

PYBABEL := $(RUN) pybabel

i18n-extract: install ## collect the bot's responses (N_()) and the caseworkers' canned replies (T_()) into locales/*.pot
	$(PYBABEL) extract -F babel.cfg -k N_ --no-location --sort-output --project migrant-helpline \
	  -o locales/messages.pot .
	$(PYBABEL) extract -k T_ --no-default-keywords --no-location --sort-output \
	  --project migrant-helpline -o locales/caseworker.pot bot/dashboard/canned.py

i18n-update: install ## bring every pack's messages.po up to date with messages.pot (new packs get one)
	@for pack in locales/*/pack.yml; do code=$$(basename $$(dirname $$pack)); \
	  if [ ! -f locales/$$code/LC_MESSAGES/messages.po ]; then \
	    $(PYBABEL) init -i locales/messages.pot -d locales -D messages -l $$code; fi; done
	$(PYBABEL) update -i locales/messages.pot -d locales -D messages --no-fuzzy-matching
	@for pack in locales/*/pack.yml; do code=$$(basename $$(dirname $$pack)); \
	  if [ ! -f locales/$$code/LC_MESSAGES/caseworker.po ]; then \
	    $(PYBABEL) init -i locales/caseworker.pot -d locales -D caseworker -l $$code; fi; done
	$(PYBABEL) update -i locales/caseworker.pot -d locales -D caseworker --no-fuzzy-matching

i18n-dashboard: install ## the dashboard's own words: extract into bot/dashboard/locales/dashboard.pot, update its catalogues
	$(PYBABEL) extract -F babel-dashboard.cfg -k _ -k _l --no-default-keywords --no-location \
	  --sort-output --project migrant-helpline-dashboard -o bot/dashboard/locales/dashboard.pot .
	$(PYBABEL) update -i bot/dashboard/locales/dashboard.pot -d bot/dashboard/locales -D dashboard \
	  --no-fuzzy-matching

i18n-compile: install ## compile the catalogues to .mo (checks them; the bot itself reads the .po files)
	$(PYBABEL) compile -d locales -D messages --statistics

bench: install ## concurrent conversations (REST, then the signed Twilio webhook), ours next to stock Rasa (~20 min)
	$(RUN) python tests/bench/bench_dialogue.py --write docs/benchmarks.md
	$(RUN) python tests/bench/bench_channels.py --write docs/benchmarks.md

sms-report: install ## SMS segments of every response in every language (G = GSM-7, U = UCS-2)
	$(RUN) python -m bot.i18n

clean: ## remove trained models and caches (not the installed environment)
	rm -rf models .rasa .pytest_cache
