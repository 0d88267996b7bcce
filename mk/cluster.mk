# The local twin of the AWS deployment: S3 server + replicas + HAProxy (scripts/cluster.sh).
#   make cluster                  start on loopback, stay in the foreground; Ctrl-C stops it all
#   make cluster REPLICAS=3 CLUSTER_PORT=8080 CLUSTER_STORAGE=file
#   make cluster CLUSTER_INDEX=pg   the fleet mode: S3 + a PostgreSQL index (scripts/postgres.sh)
# tests/cluster (run by `make test`) starts and stops its own clusters with the same script.

APT_PACKAGES += haproxy

REPLICAS ?= 2
CLUSTER_PORT ?= 8080
CLUSTER_STORAGE ?= s3
CLUSTER_INDEX ?= none
CLUSTER_DIR ?= .cache/cluster

.PHONY: cluster cluster-stop

cluster: $(RUN_STAMP) system-packages
	CLUSTER_REPLICAS=$(REPLICAS) CLUSTER_PORT=$(CLUSTER_PORT) CLUSTER_STORAGE=$(CLUSTER_STORAGE) \
		CLUSTER_INDEX=$(CLUSTER_INDEX) \
		bash scripts/cluster.sh run $(CLUSTER_DIR)

# Only needed if a `make cluster` was killed without a chance to clean up.
cluster-stop:
	bash scripts/cluster.sh stop $(CLUSTER_DIR)
