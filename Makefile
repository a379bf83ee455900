# Every target creates the virtual environment when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# A failed kernel build fails the install (and so `make test`); on a machine without a C compiler, run
# `make CPU_BUILD_FLAGS= GROUPNORM_TEST_ALLOW_NO_KERNELS=1 test` to test the plain-torch paths alone.
CPU_BUILD_FLAGS ?= --strict

.PHONY: install test lint demo bench docs gpu-check gpu-check-dry compile-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e '.[dev,vision,onnx,repro,docs,diffusers]'
	$(PY) -m groupnorm.ops.cpu.build $(CPU_BUILD_FLAGS)
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests

# Kernel benchmark on this machine (quick preset, < 2 minutes on 2 cores); BENCH_ARGS adds or overrides options,
# e.g. make bench BENCH_ARGS="--preset full --resume".
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) -m groupnorm bench --preset quick --device cpu --json bench.json --csv bench.csv $(BENCH_ARGS)

# The reproduction demo: digits, BN vs GN over images per device, LN and IN, three seeds (about 5 minutes on
# 2 cores). Two single-thread workers share the sweep (each run is locked by the one training it); the report is
# written once both are done, then the committed CIFAR-10 run is shown beside it.
DEMO_OUT ?= runs/demo
CIFAR_REPORT := docs/results/cifar10-cpu/report.md
demo: $(STAMP)
	@$(PY) -m groupnorm repro --preset demo --out $(DEMO_OUT) --quiet --no-report & worker=$$!; \
	$(PY) -m groupnorm repro --preset demo --out $(DEMO_OUT) --no-report; status=$$?; \
	wait $$worker && test $$status -eq 0
	@$(PY) -m groupnorm repro report $(DEMO_OUT)
	@echo; echo "Digits are too easy for BatchNorm's small-batch failure to show; the committed CIFAR-10 run shows it"
	@echo "(docs/results/cifar10-cpu/report.md):"; echo
	@$(PY) -c "from groupnorm.repro.report import report_summary; print(report_summary('$(CIFAR_REPORT)'))"
	@echo; echo "Figure 1 (BN, GN and GN+WS against images per device, the paper's beside them):"
	@echo "  docs/results/cifar10-cpu/fig1_error_vs_batch.png"
	@echo "GN reproduces batch independence and BN its small-batch loss; plain GN under-fits in 10 epochs, GN+WS"
	@echo "does not. At 30 epochs GN - BN at 32 per device narrows from 9.2 to 5.1 points, and BN at 2 per device"
	@echo "draws level with GN (23.2 %): docs/results/cifar10-cpu/long/gap-vs-epochs.md"

DOC_MODULES := groupnorm groupnorm.functional groupnorm.reference groupnorm.layers groupnorm.convert \
	groupnorm.export groupnorm.testing groupnorm.activations groupnorm.ops groupnorm.repro groupnorm.bench \
	!groupnorm.bench.providers_liger

# API reference from the docstrings, as a static site in site/ (open site/index.html). The Liger-Kernel
# benchmark provider imports an optional package, so it is left out.
docs: $(STAMP)
	$(PY) -m pdoc --docformat restructuredtext -o site $(DOC_MODULES)
	@echo "API reference: site/index.html"

# On a GPU host (from source, no install needed): the comparison table, then the CUDA tests, under $(GPU_OUT)
# (at most 8 minutes; see the header of scripts/gpu_check.sh).
GPU_OUT ?= gpu-results
gpu-check:
	OUT=$(GPU_OUT) bash scripts/gpu_check.sh

# The same script's every step without a GPU: CPU tensors through Triton's interpreter, tiny shapes (a few
# minutes on 2 loaded cores, mostly process start-up and the interpreter).
gpu-check-dry: $(STAMP)
	DRY_RUN=1 OUT=$(GPU_OUT)/dry-run PYTHON=$(PY) bash scripts/gpu_check.sh

# Compile every Triton kernel variant for sm_90 without a GPU (a quick subset), then report what the key shapes
# launch (access widths, registers, spills) into $(GPU_OUT)/compile-report.json.
compile-check: $(STAMP)
	PYTHONPATH=src $(PY) scripts/triton_compile_check.py --quick
	mkdir -p $(GPU_OUT)
	PYTHONPATH=src $(PY) scripts/triton_compile_check.py --key-shapes --json $(GPU_OUT)/compile-report.json

clean:
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache
