# Two commands do everything on a fresh machine:
#   make report   create .venv if missing, run every experiment notebook (papermill), build reports/report.{md,html}
#                 (a notebook whose inputs match its last run is skipped; FORCE=1 reruns every one;
#                 DATASET=catalogue.csv: your own collection, into reports/datasets/<name>/)
#   make test     create .venv if missing, run the notebook tests (nbdev_test) and the integration tests (pytest)
#   make docs     the documentation site from the notebooks into _site/ (docs/build.py)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= cpu
export AUDIO_LATENT_DATA ?= $(abspath ../shared/data)
export AUDIO_LATENT_CACHE ?= $(abspath .cache)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: env test test-nbs test-py report run-notebooks build-report check-results bench bench-train bench-features bench-yamnet bench-search bench-store bench-startup bench-spans bench-ondisk export readme docs clean-cache

$(VENV)/.installed: requirements.txt settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

env: $(VENV)/.installed

test: env test-nbs test-py

test-nbs: env
	$(BIN)/nbdev_test --n_workers 2 --do_print

test-py: env
	$(BIN)/pytest -q -p no:cacheprovider tests

# DATASET=path/to/catalogue.csv runs every track on your own collection (reports/datasets/<name>/);
# TRACKS=baseline,yamnet runs a subset; ALLOW_MISSING=1 leaves out unusable clips (named in the report) instead of stopping
REPORT_ARGS = --profile $(PROFILE) $(if $(DATASET),--dataset '$(DATASET)') $(if $(ALLOW_MISSING),--allow-missing)
report: env
	$(BIN)/python -m audio_latent.report run $(REPORT_ARGS) $(if $(FORCE),--force) $(if $(TRACKS),--tracks '$(TRACKS)')
	$(BIN)/python -m audio_latent.report build $(REPORT_ARGS)

build-report: env
	$(BIN)/python -m audio_latent.report build

# Rerun every notebook with an EMPTY run cache (nothing reused) and compare with the COMMITTED results (HEAD's
# reports/results and reports/predictions, never the working tree's, which an exploring run may have overwritten): rows
# of deterministic runs must be identical, trained ones within 3 sd across seeds (at least 0.002), runs.csv alike, run
# ids unchanged (ALLOW_NEW_RUNS=1: changed ids accepted when recorded on both sides, and listed). Takes as long as a
# fresh `make report`; the rerun's files replace reports/ (see `git diff`).
check-results: env
	rm -rf .check && mkdir -p .check/committed
	set -o pipefail; git archive HEAD reports/results reports/predictions | tar -x -C .check/committed
	AUDIO_LATENT_CACHE=$(abspath .check/cache) $(BIN)/python -m audio_latent.report run --force --profile $(PROFILE)
	$(BIN)/python -m audio_latent.report build
	$(BIN)/python -m audio_latent.experiment check .check/committed/reports reports $(if $(ALLOW_NEW_RUNS),--allow-new-runs)

bench: bench-features bench-yamnet bench-search

bench-features: env
	$(BIN)/python -m audio_latent.features

bench-yamnet: env
	$(BIN)/python -m audio_latent.yamnet_reference bench

bench-search: env
	$(BIN)/python -m audio_latent.cli bench

# start-up + one query on a 2000-clip YAMNet index (today's Keras path vs the default), embedding throughput
bench-startup: env
	$(BIN)/python -m audio_latent.startup bench-startup
	$(BIN)/python -m audio_latent.startup bench-backends

# peak memory of 1-min, 10-min and 2-h recordings, add vs rewrite at 100k, SQLite vs LanceDB (lancedb is pinned in requirements.txt; `pip install audio_latent[bench]` elsewhere)
bench-store: env
	$(BIN)/python -m audio_latent.search_bench memory
	$(BIN)/python -m audio_latent.store bench

# span search on ESC-50 recordings made of real clips: the window length chosen on folds 1-4, the figures on fold 5 (~4 min)
bench-spans: env
	$(BIN)/python -m audio_latent.cli bench-spans

# 10M synthetic segment vectors: on-disk IVF-PQ, re-ranked by PCA-256 8-bit codes in memory, then float16 from disk; build time, size, peak memory, p50/p99, recall@10
# in one run (about 24 GB under $(AUDIO_LATENT_CACHE)/ondisk, about 25 min on 2 cores); writes reports/benchmarks/ondisk.csv
bench-ondisk: env
	nice -n 10 $(BIN)/python -m audio_latent.ondisk bench --n 10000000

# developer loop: notebooks -> module, clean notebooks, README from nbs/index.ipynb
export: env
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(MAKE) readme

# nbdev_readme needs Quarto, which these machines lack; nbconvert renders the same notebook to Markdown
readme: env
	$(BIN)/jupyter nbconvert --to markdown --log-level WARN nbs/index.ipynb --output-dir . --output README

# the documentation site (MkDocs, offline): every notebook as a page, an API page per module, the report -> _site/
# (open _site/index.html, or `python -m http.server -d _site` for the search box)
docs: env
	$(BIN)/python docs/build.py --site _site

clean-cache:
	rm -rf $(AUDIO_LATENT_CACHE)

# steps per CPU-second of each thesis model: eager (today's step), traced, traced in bfloat16, XLA; ratios to eager measured in the same run (~10 min)
bench-train: env
	$(BIN)/python -m audio_latent.thesis_models bench-train --profile $(PROFILE)
