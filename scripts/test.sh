#!/usr/bin/env bash
# The README's test command: set up, lint, check the layers, run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
# The layer contracts of pyproject.toml [tool.importlinter] (docs/DESIGN.md §1).
.venv/bin/lint-imports
.venv/bin/python -m pytest -n 2 -q "$@"
