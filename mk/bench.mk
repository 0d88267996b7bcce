# Benchmarks: MindProject and its baselines side by side (bench/run.py, docs/benchmarks.md).
#   make bench                                    every scenario on both backends (~15-20 min)
#   make bench SCENARIOS=upload_1k BACKENDS=file  a subset
#   make bench BENCH_ARGS="--duration 5"          any other bench/run.py option
# Results: bench/results/<UTC time>/{summary.md,chart.png,results.json}, bench/results/latest.md.

BENCH_VENV := .cache/bench-venv
BENCH_STAMP := $(BENCH_VENV)/.stamp-$(shell cksum bench/requirements.txt | cut -d' ' -f1)
# Debian packages only the benchmarks need (installed by `make bench`, not by `make test`).
BENCH_APT_PACKAGES := wrk curl

SCENARIOS ?=
BACKENDS ?=
TARGETS ?=
BENCH_ARGS ?=

.PHONY: bench bench-venv

bench-venv: $(BENCH_STAMP)

$(BENCH_STAMP): bench/requirements.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q -r bench/requirements.txt
	rm -f $(BENCH_VENV)/.stamp-* && touch $@

bench: $(RUN_STAMP) $(BENCH_STAMP)
	bash scripts/install-system-packages.sh $(APT_PACKAGES) $(BENCH_APT_PACKAGES)
	$(BENCH_VENV)/bin/python bench/run.py \
		$(if $(SCENARIOS),--scenarios $(SCENARIOS)) \
		$(if $(BACKENDS),--backends $(BACKENDS)) \
		$(if $(TARGETS),--targets $(TARGETS)) \
		$(BENCH_ARGS)
