# pinnacle-sc: two entry points, `make demo` and `make test`; both build .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SNAKEMAKE := $(VENV)/bin/snakemake
CORES ?= all
STAMP := $(VENV)/.installed
BENCH_SIZES ?= 20000 100000 300000
BENCH_PATIENTS ?= 10

.PHONY: venv demo test test-fast lint dryrun report bench lock clean

venv: $(STAMP)

# torch first (a CPU build); every later pip call is constrained to it so no CUDA wheels arrive.
$(STAMP): envs/lock.txt envs/constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r envs/lock.txt -c envs/constraints.txt
	$(PIP) install -q --no-deps -e .
	$(PIP) check
	touch $(STAMP)

demo: $(STAMP)
	$(SNAKEMAKE) --cores $(CORES)
	$(SNAKEMAKE) --report results/report.html
	@echo
	@echo "== truth check (results/truth_check.tsv) =="
	@column -t -s "$$(printf '\t')" results/truth_check.tsv
	@echo
	@echo "Report: $(CURDIR)/results/report.html"

# Test files spread over the cores (pytest-xdist; one file's tests share a worker, so the
# module fixtures such as the demo run are built once). PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= auto
test: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=25

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(SNAKEMAKE) --lint
	$(VENV)/bin/ruff check src tests tools workflow/scripts resources

dryrun: $(STAMP)
	$(SNAKEMAKE) -n

report: $(STAMP)
	$(SNAKEMAKE) --report results/report.html

# Simulated cohorts of each size through QC..annotation (Harmony, then scVI) and the bare scanpy
# baseline; writes docs/benchmarks.md. BENCH_SIZES="20000 100000 300000 1000000" adds the opt-in 1M;
# BENCH_PATIENTS=53 simulates the trial's 106 samples (cells split evenly; 10 patients by default).
bench: $(STAMP)
	$(PY) tools/bench.py --sizes $(BENCH_SIZES) --patients $(BENCH_PATIENTS) --workdir bench --out docs/benchmarks.md

lock: $(STAMP)
	( echo "# Full pinned environment (pip freeze of a verified install; Python 3.11, CPU torch)."; \
	  echo "# Regenerate: make lock"; \
	  $(PIP) freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu/torch==\1/' ) > envs/lock.txt

clean:
	rm -rf results logs benchmarks demo .snakemake
