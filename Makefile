SHELL=/bin/bash
LINT_PATHS=sb3_trpo/ tests/ scripts/

pytest:
	python -m pytest -m "not expensive" -n 2 tests

pytest-all:
	python -m pytest -n 2 tests

type:
	python -m mypy sb3_trpo

lint:
	python -m ruff check ${LINT_PATHS}

format:
	python -m ruff check --select I --fix ${LINT_PATHS}
	python -m black ${LINT_PATHS}

check-codestyle:
	python -m black --check ${LINT_PATHS}

commit-checks: format type lint

.PHONY: pytest pytest-all type lint format check-codestyle commit-checks
