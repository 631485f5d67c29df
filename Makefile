# Thin wrapper over CMake: every target installs missing Debian packages first (scripts/deps).
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?= -DPATTO_WERROR=ON

.PHONY: all deps build test demo bench asan clean

all: build

deps:
	scripts/deps

build: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

demo: build
	scripts/demo $(BUILD)

bench: build
	$(BUILD)/tests/bench/crdt-bench
	$(BUILD)/tests/bench/proto-bench

clean:
	rm -rf $(BUILD)
