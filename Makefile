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

# The documentation site (Sphinx), warnings as errors, then the check that every internal link and image resolves
docs:
	python -m sphinx -W --keep-going -b html docs docs/_build/html
	python scripts/docs_screenshots.py --no-build --no-screenshots

# The same, plus screenshots of the landing page and the TRPO page (headless Chromium) in docs/_static/screenshots/
docs-screenshots:
	python scripts/docs_screenshots.py

check-codestyle:
	python -m black --check ${LINT_PATHS}

commit-checks: format type lint

.PHONY: pytest pytest-all type lint format check-codestyle commit-checks docs docs-screenshots
