# Two commands on a fresh machine with only python3:  make demo  |  make test
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-firmware lint clean
QEMU_NOTICE = $(PY) -c "from metactl.deploy.firmware_build import qemu_skip_notice as n; m = n(); m and print(m)"

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: here that is the local CPU wheel; any other spec pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# then the project, at the versions the tests passed with (constraints.txt)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/metactl demo --out runs/demo

# The firmware tests build with the system gcc (POSIX port); the QEMU ones also need the ARM tools (README).
test: $(STAMP)
	@$(QEMU_NOTICE)
	MUJOCO_GL=egl $(PY) -m pytest -q

test-firmware: $(STAMP)
	@$(QEMU_NOTICE)
	$(PY) -m pytest -q tests/firmware tests/deploy/test_fixed_params.py

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) runs
