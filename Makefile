# CoMBInE set-up. `make test` and `make demo` work from a fresh clone: they create .venv if
# missing, install torch (pinned, CPU build) first, then the package with its dev extras.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo install clean bench

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(VENV)/bin/combine demo --out demo_output

bench: $(STAMP)
	$(PY) benchmarks/bench_pconv.py

clean:
	rm -rf $(VENV) demo_output
