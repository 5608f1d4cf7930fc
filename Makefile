# The two commands of a fresh machine: `make demo` and `make test`. Both create .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint proto openapi install clean fuzz stack-test fleet-test

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[serve,client,edge,train,export,dev]'
	touch $(STAMP)

install: $(STAMP)

## Main job on embedded defaults: bundled models, a local server, a few faces, no external services.
demo: $(STAMP)
	$(BIN)/python -m cli.demo

## Lint, types, layering, then the test suite (slow tests excluded; run them with `make test-slow`).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Coverage-guided fuzzing of the decode path (atheris; bounded by FUZZ_RUNS / FUZZ_TIME seconds;
## FUZZ_FORMAT=2 fuzzes the in-process v2 decoder, 1,2 both formats).
FUZZ_RUNS ?= 100000
FUZZ_TIME ?= 3600
FUZZ_FORMAT ?= 2
fuzz: $(STAMP)
	$(BIN)/python -m pip install -q atheris
	$(BIN)/python -m scripts.fuzz_decoder --runs $(FUZZ_RUNS) --max-time $(FUZZ_TIME) --format $(FUZZ_FORMAT)

## Regenerate the gRPC stubs (the only place generated code lives: proto/fercomp/v1/).
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. proto/fercomp/v1/fercomp.proto

## Regenerate docs/openapi.json from the REST app (tests/service/test_openapi.py checks it).
openapi: $(STAMP)
	PYTHONPATH=. $(BIN)/python scripts/gen_openapi.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## Build the images and run the compose stack here, no registry needed (root; see docs/DEPLOY.md).
stack-test:
	bash deploy/stack_test.sh

## The fleet on a single-node Docker Swarm here: 3 replicas, PostgreSQL, HAProxy, Prometheus,
## checked under traffic (root; exit 0 pass, 1 a check failed, 2 cannot run here; docs/DEPLOY.md).
fleet-test:
	bash deploy/swarm/fleet_test.sh
