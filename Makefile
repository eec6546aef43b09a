# Entry points. Each target installs what it needs (scripts/setup.sh) and builds first.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: setup build test run bench fuzz clean build-libtorch2

setup:
	@bash scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release > $(BUILD).cmake.log 2>&1 || (cat $(BUILD).cmake.log; exit 1)
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The main job: one scoring seed of the study's LM protocol (text_lm, AdamW, the pre-registered LAWA
# and EMA, the protocol's target, stopped once every model has reached it; configs/demo.toml), then
# its steps to target beside the study's over every seed (results/study/results.json).
run: build
	@$(BUILD)/wavg train --config configs/demo.toml --overwrite
	@/usr/bin/python3 scripts/demo_compare.py runs/demo results/study/results.json
	@$(BUILD)/wavg report runs/demo -o runs/demo/report.html

bench: build
	@bash bench/run.sh $(BUILD)

# libFuzzer targets (clang, core/ and io/ only), each run for FUZZ_SECONDS over its seed corpus.
FUZZ_SECONDS ?= 30
fuzz: setup
	@bash fuzz/run.sh $(FUZZ_SECONDS) $(BUILD)-fuzz

# wavg against LibTorch 2.x with CUDA from a pinned PyPI torch (scripts/build_libtorch2.sh): compiles
# and links the CUDA paths on a machine with the CUDA toolkit; not part of `make test`.
build-libtorch2: setup
	@bash scripts/build_libtorch2.sh

clean:
	rm -rf $(BUILD) $(BUILD).cmake.log $(BUILD)-fuzz $(BUILD)-fuzz.*.log
