# Two commands do all the set-up on a fresh machine:  `make run` (the main job) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= out

# Real collections live beside the checkout; nothing is downloaded at run time.
export WORKBENCH_DATA ?= $(abspath ../shared/datasets)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: venv redis-server java run test report clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch lies on this machine's disk; installing it first keeps pip off the CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

## Debian's redis-server (the Redis tests start their own), installed only when missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { S=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$S apt-get update -qq && $$S apt-get install -y -qq redis-server; }

## Java 17 for pyspark (the feature store's Spark engine), Debian's headless JRE, installed only when missing.
java:
	@command -v java >/dev/null 2>&1 || { S=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$S apt-get update -qq && $$S apt-get install -y -qq openjdk-17-jre-headless; }

## The main job: execute the notebook series (full parameters), write the report and the MLflow store.
run: venv
	$(BIN)/workbench run --out $(OUT)

## The tests, notebooks included (executed with their CI parameters).
test: venv redis-server java
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

report: venv
	$(BIN)/workbench report --out $(OUT)

clean:
	rm -rf $(OUT) .pytest_cache
