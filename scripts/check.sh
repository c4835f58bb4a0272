#!/usr/bin/env bash
# The one check developers and CI both run: lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
# jsii (under aws-cdk-lib) prints a large banner about Node 20's end of life on every import.
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION=1
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1

echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== import contracts"; lint-imports --no-cache
# Two phases: everything else on every core (pytest-xdist), then the timing-sensitive tests alone.
# Exit 5 means "nothing selected" (e.g. arguments that name only tests of the other phase).
phase() { pytest "$@" || { rc=$?; [ "$rc" -eq 5 ] || exit "$rc"; }; }
echo "== pytest (parallel)"; phase -n "${PYTEST_WORKERS:-auto}" -m "not serial" "$@"
echo "== pytest (serial)"; phase -m serial "$@"
