#!/usr/bin/env bash
# Install checkov (the IaC scanner tests/infra/test_checkov.py runs on the synthesized template) into its
# own virtual environment, .local/checkov (ignored by git), idempotently, from PyPI only.
# Its own environment because checkov pins boto3, botocore and packaging below what the project needs.
# Env: PYTHON (default python3), CHECKOV_VERSION (default the pinned one below).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
VENV="$ROOT/.local/checkov"
PYTHON="${PYTHON:-python3}"

installed="$("$VENV/bin/checkov" --version 2>/dev/null || true)"
if [[ "$installed" == "$CHECKOV_VERSION" ]]; then
  echo "install-checkov: checkov $CHECKOV_VERSION already in $VENV"
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "checkov==$CHECKOV_VERSION"
[[ "$("$VENV/bin/checkov" --version)" == "$CHECKOV_VERSION" ]] || { echo "install-checkov: checkov does not run" >&2; exit 1; }
echo "install-checkov: installed checkov $CHECKOV_VERSION into $VENV"
