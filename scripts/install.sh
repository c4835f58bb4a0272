#!/usr/bin/env bash
# Install everything gpu-recovery needs on a fresh machine, from the package registries only:
# a Python virtual environment (.venv) with the project and its dev tools (amazon-kclpy downloads the
# KCL jars from Maven Central while it builds), and the pinned Node tools (.local/node).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"

for extra in .ci/install-*.sh; do
  [ -e "$extra" ] && bash "$extra"
done
echo "installed: .venv ($(.venv/bin/python --version)), gpu-recovery $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("gpu-recovery"))')"
