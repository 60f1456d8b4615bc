SHELL=/bin/bash
LINT_PATHS=sb3_trpo/ tests/ benchmarks/ docs/examples/

pytest:
	python -m pytest -m "not expensive" -n 2 tests

pytest-all:
	python -m pytest -n 2 tests

type:
	python -m mypy sb3_trpo benchmarks

lint:
	python -m ruff check ${LINT_PATHS}

format:
	python -m ruff check --select I --fix ${LINT_PATHS}
	python -m black ${LINT_PATHS}

# The documentation site (Sphinx), warnings as errors, then the check that every internal link and image resolves
docs:
	python -m sphinx -W --keep-going -b html docs docs/_build/html
	python -m benchmarks docs --no-build --no-screenshots

# The same, plus screenshots of the landing page and the TRPO page (headless Chromium) in docs/_static/screenshots/
docs-screenshots:
	python -m benchmarks docs

check-codestyle:
	python -m black --check ${LINT_PATHS}

commit-checks: format type lint

# The oldest versions declared: `make compat` installs the lower bounds (>=) that pyproject.toml gives these packages,
# pinned exactly (>=2.9 -> ==2.9.0), with the project and its tests and extra extras, in a fresh venv outside the tree
# (COMPAT_VENV, removed and made anew each run), then runs the default tests there. pyproject.toml is the one place
# the versions are written; docs/guide/install.md says which were tested. Not in CI: about 20 minutes.
COMPAT_PACKAGES = stable-baselines3 sb3-contrib torch gymnasium rl_zoo3
COMPAT_VENV ?= $(or $(TMPDIR),/tmp)/sb3_trpo-compat-venv
COMPAT_PYTHON ?= python3
define COMPAT_PINS_PY
import re, sys
text = open("pyproject.toml").read()
pins = []
for name in sys.argv[1:]:
    found = re.findall(r'"' + re.escape(name) + r'>=([0-9.]+)', text)
    if len(found) != 1:
        sys.exit(f"pyproject.toml: expected one lower bound for {name}, found {found}")
    version = found[0] + ".0" * (2 - found[0].count("."))
    pins.append(f"{name}=={version}")
print(" ".join(pins))
endef
export COMPAT_PINS_PY
# pip's notes on the machine's local package folders that lack a package, one per package: noise here
COMPAT_QUIET = { grep -v "is neither a file nor a directory" || true; }

compat:
	@set -euo pipefail; start=$$(date +%s); \
	pins=$$($(COMPAT_PYTHON) -c "$$COMPAT_PINS_PY" $(COMPAT_PACKAGES)); \
	echo "make compat: $$pins in $(COMPAT_VENV)"; \
	rm -rf "$(COMPAT_VENV)"; \
	$(COMPAT_PYTHON) -m venv "$(COMPAT_VENV)"; \
	"$(COMPAT_VENV)/bin/python" -m pip install --quiet --disable-pip-version-check \
		$$pins -e ".[tests,extra]" 2>&1 | $(COMPAT_QUIET); \
	"$(COMPAT_VENV)/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
		| grep -iE "^(stable.baselines3|sb3.contrib|torch|gymnasium|rl.zoo3|numpy|mujoco|ale.py) "; \
	"$(COMPAT_VENV)/bin/python" -m pytest -m "not expensive" -n 2 -p no:benchmark tests; \
	echo "make compat: passed with $$pins in $$(( $$(date +%s) - start )) s"

.PHONY: pytest pytest-all type lint format check-codestyle commit-checks docs docs-screenshots compat
