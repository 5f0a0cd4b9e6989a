# brig: `make demo` builds an image with brig-build and runs it with brig;
# `make test` runs every test.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: deps build demo test unit e2e vm-test conformance bench

deps:
	bash scripts/deps.sh

build: deps
	$(CARGO) build --release --workspace --exclude brig
	CARGO=$(CARGO) bash scripts/build-brig.sh
	$(CARGO) build --workspace

demo: build
	bash scripts/demo.sh

unit: build
	$(CARGO) test --workspace --lib --bins

e2e: build
	BRIG=$(CURDIR)/target/release/brig BRIG_BUILD=$(CURDIR)/target/release/brig-build \
	BRIG_SHIM=$(CURDIR)/target/release/containerd-shim-brig-v2 $(CARGO) test -p brig-tests -- --test-threads=2

vm-test: build
	VM_BATS="checkpoint.bats cgroups.bats exec.bats update.bats delete.bats" bash tests/vm/run.sh

conformance: build
	bash conformance/setup.sh
	BRIG=$(CURDIR)/target/release/brig bash conformance/run.sh --runtimes "brig runc"
	BRIG_BUILD=$(CURDIR)/target/release/brig-build bash conformance/image-spec.sh

test: build
	@set -o pipefail; fail=0; \
	echo "== unit tests"; $(MAKE) -s unit || fail=1; \
	echo "== end-to-end tests"; $(MAKE) -s e2e || fail=1; \
	echo "== cgroup v2 guest"; $(MAKE) -s vm-test || fail=1; \
	echo "== conformance (runc's integration suite)"; $(MAKE) -s conformance || fail=1; \
	echo "== summary: $$( [ $$fail = 0 ] && echo all passed || echo FAILURES, see above )"; \
	exit $$fail

bench: build
	BRIG=$(CURDIR)/target/release/brig bash bench/run.sh
	BRIG=$(CURDIR)/target/release/brig BRIG_BUILD=$(CURDIR)/target/release/brig-build bash bench/builder.sh
	BRIG=$(CURDIR)/target/release/brig BRIG_BUILD=$(CURDIR)/target/release/brig-build \
	BRIG_SHIM=$(CURDIR)/target/release/containerd-shim-brig-v2 bash bench/shim.sh
