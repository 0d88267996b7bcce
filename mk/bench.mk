# Benchmarks: MindProject and its baselines side by side (bench/run.py, docs/benchmarks.md).
#   make bench                                    every scenario on both backends (~15-20 min)
#   make bench SCENARIOS=upload_1k BACKENDS=file  a subset
#   make bench BENCH_ARGS="--duration 5"          any other bench/run.py option
# Results: bench/results/<UTC time>/{summary.md,chart.png,results.json}, bench/results/latest.md.
#
# The measurements behind docs/decisions.md (bench/choices/), in a venv of their own:
#   make bench-choices                            HTTP stack, then S3 client
#   make bench-choices CHOICES=s3_client          one of them (asgi_stack, s3_client, pg_driver,
#                                                 sql_layer)
#   make bench-choices ASGI_STACK_ARGS="--rounds 1 --duration 2" S3_CLIENT_ARGS="--small 300"
# They print markdown tables; add --json FILE to either's arguments to keep the raw figures.

BENCH_VENV := .cache/bench-venv
BENCH_STAMP := $(BENCH_VENV)/.stamp-$(shell cksum bench/requirements.txt | cut -d' ' -f1)
# Debian packages only the benchmarks need (installed by `make bench`, not by `make test`).
BENCH_APT_PACKAGES := wrk curl

SCENARIOS ?=
BACKENDS ?=
TARGETS ?=
BENCH_ARGS ?=

.PHONY: bench bench-venv bench-choices choices-venv

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

CHOICES_VENV := .cache/choices-venv
CHOICES_STAMP := $(CHOICES_VENV)/.stamp-$(shell cksum bench/choices/requirements.txt | cut -d' ' -f1)
CHOICES ?= asgi_stack s3_client pg_driver sql_layer
ASGI_STACK_ARGS ?=
S3_CLIENT_ARGS ?=
PG_DRIVER_ARGS ?=
SQL_LAYER_ARGS ?=

choices-venv: $(CHOICES_STAMP)

$(CHOICES_STAMP): bench/choices/requirements.txt
	test -x $(CHOICES_VENV)/bin/python || $(PYTHON) -m venv $(CHOICES_VENV)
	$(CHOICES_VENV)/bin/pip install -q --upgrade pip
	$(CHOICES_VENV)/bin/pip install -q -r bench/choices/requirements.txt
	rm -f $(CHOICES_VENV)/.stamp-* && touch $@

# One recipe, so the two never run at once (under make -j too) and disturb each other's figures.
# asgi_stack.py drives its candidates with wrk; s3_client.py starts its own Ceph RGW.
bench-choices: $(CHOICES_STAMP)
	bash scripts/install-system-packages.sh $(APT_PACKAGES) $(BENCH_APT_PACKAGES)
	$(if $(filter asgi_stack,$(CHOICES)),$(CHOICES_VENV)/bin/python bench/choices/asgi_stack.py $(ASGI_STACK_ARGS))
	$(if $(filter s3_client,$(CHOICES)),$(CHOICES_VENV)/bin/python bench/choices/s3_client.py $(S3_CLIENT_ARGS))
	$(if $(filter pg_driver,$(CHOICES)),$(CHOICES_VENV)/bin/python bench/choices/pg_driver.py $(PG_DRIVER_ARGS))
	$(if $(filter sql_layer,$(CHOICES)),$(CHOICES_VENV)/bin/python bench/choices/sql_layer.py $(SQL_LAYER_ARGS))

# Fleet scale (issue 12): S3-only mode against the PostgreSQL index mode, two replicas, a
# counting proxy in front of Ceph; writes bench/results/<UTC time>-fleet-scale/ (bench/fleet.py).
#   make bench-fleet-scale                                     the full run (~15 min)
#   make bench-fleet-scale FLEET_ARGS="--clients 512 --windows 50 --no-reads"   one point
FLEET_ARGS ?=

.PHONY: bench-fleet-scale
bench-fleet-scale: $(RUN_STAMP) $(BENCH_STAMP)
	bash scripts/install-system-packages.sh $(APT_PACKAGES) $(BENCH_APT_PACKAGES)
	$(BENCH_VENV)/bin/python bench/fleet.py $(FLEET_ARGS)
