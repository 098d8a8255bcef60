# The two commands of README.md: `make demo` and `make test`. Both build the environment first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
MODELS_VENV := .venv-models

.PHONY: demo test env models-env system-deps clean

env: system-deps $(VENV)/.installed

# Tools from Debian's packages: ffmpeg for transcoding and decoding, espeak-ng for real speech in
# tests, chromium for the test that opens the MLflow UI in a real browser. Installed only where
# missing (CI runs as root on a Debian machine).
system-deps:
	@command -v ffmpeg >/dev/null && command -v espeak-ng >/dev/null && command -v chromium >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg espeak-ng chromium >/dev/null)

# torch goes in first and alone: `pip install torch==2.13.0` takes the CPU wheel where one is
# provided locally, and nothing later may replace it with a multi-GB CUDA build (uv keeps an installed
# torch that satisfies the project's range). The rest goes in with uv: the same packages as pip resolves,
# in a sixth of the time, which keeps CI's fresh install short.
UV_VERSION := 0.13.9
UV := $(BIN)/uv
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0 uv==$(UV_VERSION)
	$(UV) pip install --quiet --python $(BIN)/python -e ".[curation,dev]"
	touch $@

# Second environment for whisperx, pyannote.audio and open-clip (torch 2.8); see README.
models-env: $(MODELS_VENV)/.installed

# It is locked to the main environment: the packages Ray moves between the two (ovi_pl/envs.py) must
# have the same versions, checked here as the curation config load checks them.
$(MODELS_VENV)/.installed: requirements/curation-models.txt | $(VENV)/.installed
	$(PYTHON) -m venv $(MODELS_VENV)
	test -x $(UV) || $(BIN)/pip install --quiet uv==$(UV_VERSION)  # a .venv built before uv was used
	$(UV) pip install --quiet --python $(MODELS_VENV)/bin/python -r requirements/curation-models.txt
	$(UV) pip install --quiet --python $(MODELS_VENV)/bin/python --no-deps -e .
	$(BIN)/python -c "import sys; from ovi_pl.envs import lock_problems; sys.exit('\\n'.join(lock_problems( \
		'$(MODELS_VENV)', {'python': '$(MODELS_VENV)/bin/python'}, 'pin it in requirements/curation-models.txt')) or None)"
	touch $@

demo: env
	$(BIN)/python -m ovi_pl demo

# The second environment is part of the test set-up: the curation model stages and the
# evaluation scorers are tested in it. Two pytest workers: tests/conftest.py says which files run beside which.
test: env models-env
	$(BIN)/python -m pytest -n 2

clean:
	rm -rf $(VENV) $(MODELS_VENV) runs
