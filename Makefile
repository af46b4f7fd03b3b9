# geoloc_ros: `make demo` runs the main job, `make test` runs the tests, `make bench` the benchmarks.
# Everything installs itself into .venv on first use; a second run is a no-op.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
APT_PKGS := libusb-1.0-0 libgomp1
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
export PYTHONUNBUFFERED := 1
# small matrices: multi-threaded BLAS only costs on 2 cores (runs side by side use the cores)
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: all venv apt demo test test-fast bench clean weights

all: test

apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing apt packages:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "open3d needs:$$missing -- run: sudo apt-get install -y$$missing"; \
	  fi; \
	fi

$(STAMP): requirements.txt setup.py
	@$(MAKE) --no-print-directory apt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e . --no-deps
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/geoloc demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q test

bench: $(STAMP)
	$(VENV)/bin/geoloc bench all --out bench_out

clean:
	rm -rf demo_out bench_out .pytest_cache
