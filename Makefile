# brig: `make demo` builds an image with brig-build and runs it with brig;
# `make test` runs every test.
SHELL := /bin/bash
CARGO ?= cargo
FUZZ_SECONDS ?= 120

.PHONY: deps build demo test unit e2e vm-test conformance bench fuzz

deps:
	bash scripts/deps.sh

build: deps
	$(CARGO) build --release --workspace --exclude brig
	CARGO=$(CARGO) bash scripts/build-brig.sh
	$(CARGO) build --workspace

demo: build
	bash scripts/demo.sh

# Unit tests, and the API docs with every intra-doc link resolved.
unit: build
	$(CARGO) test --workspace --lib --bins
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps -q

# Every test file runs, whatever fails before it; the failed tests are listed at the end.
e2e: build
	@set -o pipefail; log=$$(mktemp); rc=0; \
	BRIG=$(CURDIR)/target/release/brig BRIG_BUILD=$(CURDIR)/target/release/brig-build \
	BRIG_SHIM=$(CURDIR)/target/release/containerd-shim-brig-v2 \
	$(CARGO) test --no-fail-fast -p brig-tests -- --test-threads=2 2>&1 | tee $$log || rc=$$?; \
	if [ $$rc != 0 ]; then echo "== end-to-end failures:"; \
	  grep -E '^test .* \.\.\. FAILED$$|^error: .*target.* failed|^    `-p brig-tests' $$log || echo "(cargo exited $$rc)"; fi; \
	rm -f $$log; exit $$rc

# The cgroup v2 guest (AppArmor enabled), a guest with SELinux, a guest with systemd as PID 1;
# all run, whatever the ones before give.
vm-test: build
	@rc=0; \
	VM_BATS="checkpoint.bats cgroups.bats exec.bats update.bats delete.bats" bash tests/vm/run.sh || rc=1; \
	echo "== SELinux guest (runtime_lsm)"; VM_SELINUX=1 VM_TESTS="runtime_lsm" VM_BATS="" bash tests/vm/run.sh || rc=1; \
	echo "== systemd guest (systemd cgroup driver, RUNC_USE_SYSTEMD=1 bats)"; VM_SYSTEMD=1 VM_BATS="cgroups.bats update.bats delete.bats" bash tests/vm/run.sh || rc=1; \
	exit $$rc

# Every suite runs, whatever the ones before give.
conformance: build
	bash conformance/setup.sh
	@rc=0; \
	BRIG=$(CURDIR)/target/release/brig bash conformance/run.sh --runtimes "brig runc" || rc=1; \
	BRIG_BUILD=$(CURDIR)/target/release/brig-build bash conformance/image-spec.sh || rc=1; \
	echo "== critest (CRI validation) through containerd: runc, brig, brig-runc-shim"; \
	BRIG=$(CURDIR)/target/release/brig BRIG_BUILD=$(CURDIR)/target/release/brig-build \
	BRIG_SHIM=$(CURDIR)/target/release/containerd-shim-brig-v2 bash conformance/critest.sh || rc=1; \
	exit $$rc

# Every part runs, whatever fails before it; the summary names the parts that failed.
test: build
	@set -o pipefail; failed=""; \
	echo "== unit tests"; $(MAKE) -s unit || failed="$$failed unit"; \
	echo "== end-to-end tests"; $(MAKE) -s e2e || failed="$$failed e2e"; \
	echo "== cgroup v2 guest"; $(MAKE) -s vm-test || failed="$$failed vm-test"; \
	echo "== conformance (runc's integration suite, image-spec, critest)"; $(MAKE) -s conformance || failed="$$failed conformance"; \
	echo "== summary: $$( [ -z "$$failed" ] && echo all passed || echo "FAILED:$$failed (see each part's failures above)" )"; \
	[ -z "$$failed" ]

bench: build
	BRIG=$(CURDIR)/target/release/brig bash bench/run.sh
	BRIG=$(CURDIR)/target/release/brig bash bench/env.sh
	BRIG=$(CURDIR)/target/release/brig BRIG_BUILD=$(CURDIR)/target/release/brig-build bash bench/builder.sh
	BRIG=$(CURDIR)/target/release/brig BRIG_BUILD=$(CURDIR)/target/release/brig-build \
	BRIG_SHIM=$(CURDIR)/target/release/containerd-shim-brig-v2 bash bench/shim.sh
	BRIG=$(CURDIR)/target/release/brig BRIG_BUILD=$(CURDIR)/target/release/brig-build \
	BRIG_SHIM=$(CURDIR)/target/release/containerd-shim-brig-v2 bash bench/cri.sh

# Coverage-guided fuzzing with AFL++ (fuzz/README.md): each target for
# FUZZ_SECONDS (default 120). Installs cargo-afl when missing; not in CI.
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh
