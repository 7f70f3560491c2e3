# infogan: the commands a user runs. `make help` lists them.

CARGO ?= cargo
DATASET ?= mnist
MODEL ?= infogan
BIN := target/release/infogan

# Optional overrides of `make train`, passed on only when set.
TRAIN_FLAGS := $(if $(RECIPE),--recipe $(RECIPE)) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(SEED),--seed $(SEED)) $(if $(OUT),--out $(OUT)) $(ARGS)

CHECKPOINT ?= runs/$(DATASET)-$(MODEL)/checkpoint.safetensors

# Data-parallel training over MPI (README, "Training on several processes"): the
# feature `mpi` needs an MPI library and libclang. `make test` and `make lint` use it
# where both are installed; `make train RANKS=n` builds with it and starts n ranks.
HAVE_MPI := $(shell (pkg-config --exists ompi-c || pkg-config --exists mpich) 2>/dev/null && \
	ldconfig -p 2>/dev/null | grep -q libclang && echo yes)
MPI_FEATURE := $(if $(HAVE_MPI),--features mpi)
MPI_HINT := apt-get install libopenmpi-dev openmpi-bin libclang-dev pkg-config
RANKS ?=
# Open MPI passes SIGTERM (and Ctrl-C) on to the ranks only after this many seconds,
# and kills them as long after: time to finish the step and write the checkpoint.
# As root, Open MPI also wants to be told that this is meant.
MPIRUN ?= mpirun -np $(RANKS) --mca odls_base_sigkill_timeout 60 $(if $(filter 0,$(shell id -u)),--allow-run-as-root)
FEATURES := $(if $(RANKS),--features mpi)
LAUNCH := $(if $(RANKS),$(MPIRUN))

.PHONY: help build test lint bench data train export serve

help:
	@echo "make train DATASET=d  fetch the data, build, and train (d: mnist, fashion-mnist, cifar10)"
	@echo "                      options: MODEL=gan  RECIPE=paper  EPOCHS=N  SEED=N  OUT=dir  ARGS='more infogan train flags'"
	@echo "                      RANKS=n: n MPI ranks (mpirun) sharing every batch; add ARGS='--threads k' for k per rank"
	@echo "make test             run every test (unit, gradient properties, PyTorch reference, determinism, CLI)"
	@echo "make bench            GEMM and layer throughput (cargo bench) and a training-step benchmark"
	@echo "make data DATASET=d   fetch a dataset into data/d/"
	@echo "make export           the trained generator as runs/DATASET-MODEL/generator.onnx (CHECKPOINT=file to choose)"
	@echo "make serve            explore the trained generator in the browser at http://127.0.0.1:8000/ (CHECKPOINT=file)"
	@echo "make lint             cargo fmt --check and clippy with warnings as errors (with and without ONNX)"
	@echo "make build            build the release binary $(BIN)"

build:
	$(CARGO) build --release $(FEATURES)

# The explorer's browser test needs Chromium (or Chrome); without one it passes
# as skipped, and this says so.
BROWSERS := chromium chromium-browser google-chrome google-chrome-stable

test:
	$(CARGO) test --release $(MPI_FEATURE)
	@if [ -z "$(HAVE_MPI)" ]; then \
		echo "make test: no MPI library (or no libclang) found, so the MPI tests were SKIPPED ($(MPI_HINT))"; fi
	@if [ -z "$$CHROME" ] && ! for b in $(BROWSERS); do command -v $$b; done | grep -q .; then \
		echo "make test: no Chromium found, so the explorer's browser test was SKIPPED (apt-get install chromium)"; fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	$(CARGO) clippy --release --no-default-features -- -D warnings
	$(if $(HAVE_MPI),$(CARGO) clippy --release --all-targets --features mpi -- -D warnings,@echo "make lint: no MPI library found, the feature mpi was not linted ($(MPI_HINT))")
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --quiet

bench: build
	$(CARGO) bench
	$(BIN) bench --dataset mnist
	$(BIN) bench --dataset cifar10

data:
	@data/fetch.sh $(DATASET)

train: build data
	$(LAUNCH) $(BIN) train --dataset $(DATASET) --model $(MODEL) $(TRAIN_FLAGS)

serve: build
	$(BIN) serve --checkpoint $(CHECKPOINT)

export: build
	$(BIN) export --checkpoint $(CHECKPOINT) --out $(dir $(CHECKPOINT))generator.onnx --check-vector $(dir $(CHECKPOINT))check_vector.safetensors
