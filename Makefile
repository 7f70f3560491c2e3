# infogan: the commands a user runs. `make help` lists them.

CARGO ?= cargo

.PHONY: help build test lint bench

help:
	@echo "make test            run every test (unit, gradient properties, PyTorch reference, determinism)"
	@echo "make lint            cargo fmt --check and clippy with warnings as errors"
	@echo "make bench           GEMM and layer throughput (cargo bench)"
	@echo "make build           build the release binary target/release/infogan"
	@echo "make data DATASET=d  fetch a dataset (mnist, fashion-mnist, cifar10) into data/d/"

build:
	$(CARGO) build --release

test:
	$(CARGO) test --release

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings

bench:
	$(CARGO) bench

DATASET ?= mnist

.PHONY: data
data:
	@data/fetch.sh $(DATASET)
