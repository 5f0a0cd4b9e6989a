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

# The cgroup v2 guest (AppArmor enabled), a guest with SELinux, a guest with systemd as PID 1
# (cgroup v2), one with systemd on cgroup v1 (hybrid);
# all run, whatever the ones before give.
vm-test: build
	@rc=0; \
	VM_BATS="checkpoint.bats cgroups.bats exec.bats update.bats delete.bats" bash tests/vm/run.sh || rc=1; \
	echo "== SELinux guest (runtime_lsm)"; VM_SELINUX=1 VM_TESTS="runtime_lsm" VM_BATS="" bash tests/vm/run.sh || rc=1; \
	echo "== systemd guest (systemd cgroup driver, rootless through the user's systemd, RUNC_USE_SYSTEMD=1 bats)"; VM_SYSTEMD=1 VM_BATS="cgroups.bats update.bats delete.bats" bash tests/vm/run.sh || rc=1; \
	echo "== systemd hybrid guest (systemd cgroup driver on cgroup v1, RUNC_USE_SYSTEMD=1 bats)"; VM_SYSTEMD=hybrid VM_BATS="update.bats delete.bats" VM_BATS_EXCLUDE="common limits|cgroup v2|v2 unified|devices \[minimal|rt period" bash tests/vm/run.sh || rc=1; \
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
# Each failed part's failure lines are repeated at the end, where a log's tail shows them.
test: build
	@set -o pipefail; failed=""; times=""; logs=$$(mktemp -d); \
	part() { t0=$$(date +%s); echo "== $$2"; $(MAKE) -s $$1 2>&1 | tee "$$logs/$$1" || failed="$$failed $$1"; times="$$times $$1 $$(( $$(date +%s) - t0 ))s"; }; \
	part unit "unit tests"; \
	part e2e "end-to-end tests"; \
	part vm-test "guests (cgroup v2, SELinux, systemd)"; \
	part conformance "conformance (runc's integration suite, image-spec, critest)"; \
	echo "== times:$$times"; \
	for p in $$failed; do echo "== $$p: what failed"; \
	  tr -d '\r' < "$$logs/$$p" | grep -a -E '(^|: )FAIL|^test .* \.\.\. FAILED$$|timed out|: FAIL$$|^error: |running for over|RETRY|near the [0-9]+s limit|^guest: ps: ' | \
	  sed 's/^guest: /vm: /' | awk '!seen[$$0]++' | tail -80; done; \
	rm -rf "$$logs"; \
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
