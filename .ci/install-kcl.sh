#!/usr/bin/env bash
# Install what the KCL integration tests need, idempotently, from the package registries only:
#   - kinesis-local (kinesis-mock on npm) into .local/node (ignored by git);
#   - a check that amazon-kclpy's KCL jars and a Java 17 runtime are present.
# amazon-kclpy's jars are downloaded by `pip install amazon-kclpy==3.1.3` (the project's
# dependencies); this script only verifies them and says how to fix a broken install.
# Env: PYTHON (default .venv/bin/python, else python3), KINESIS_LOCAL_VERSION (default 0.6.2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

KINESIS_LOCAL_VERSION="${KINESIS_LOCAL_VERSION:-0.6.2}"
KCLPY_VERSION="3.1.3"
NODE_PREFIX="$ROOT/.local/node"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="python3"; fi
fi

fail() { echo "install-kcl: $*" >&2; exit 1; }

require_tools() {
  command -v node >/dev/null 2>&1 || fail "node not found: install Node.js 20 (apt-get install nodejs npm)"
  command -v npm >/dev/null 2>&1 || fail "npm not found: install npm (apt-get install npm)"
  command -v java >/dev/null 2>&1 || fail "java not found: install a Java 17 runtime (apt-get install openjdk-17-jre-headless)"
  local java_major
  java_major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [[ "${java_major%%.*}" -ge 17 ]] 2>/dev/null || fail "java ${java_major:-?} found, the KCL 3 needs Java 17 or later"
}

install_kinesis_local() {
  local pkg="$NODE_PREFIX/node_modules/kinesis-local/package.json"
  if [[ -f "$pkg" ]] && grep -q "\"version\" *: *\"$KINESIS_LOCAL_VERSION\"" "$pkg"; then
    echo "install-kcl: kinesis-local $KINESIS_LOCAL_VERSION already in $NODE_PREFIX"
    return
  fi
  mkdir -p "$NODE_PREFIX"
  npm install --prefix "$NODE_PREFIX" --no-audit --no-fund "kinesis-local@$KINESIS_LOCAL_VERSION" >/dev/null
  [[ -f "$NODE_PREFIX/node_modules/kinesis-local/main.js" ]] || fail "npm did not install kinesis-local"
  echo "install-kcl: installed kinesis-local $KINESIS_LOCAL_VERSION into $NODE_PREFIX"
}

check_kclpy_jars() {
  local jars_dir
  jars_dir="$("$PYTHON" - <<'EOF'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("amazon_kclpy")
if spec is None or not spec.submodule_search_locations:
    sys.exit(1)
print(pathlib.Path(next(iter(spec.submodule_search_locations))) / "jars")
EOF
)" || fail "amazon_kclpy is not importable by $PYTHON: pip install amazon-kclpy==$KCLPY_VERSION"
  if ! ls "$jars_dir"/amazon-kinesis-client-multilang-*.jar >/dev/null 2>&1; then
    fail "no KCL jars in $jars_dir: pip install --force-reinstall --no-cache-dir amazon-kclpy==$KCLPY_VERSION (its build downloads the jars from Maven Central)"
  fi
  echo "install-kcl: $(ls "$jars_dir"/*.jar | wc -l) KCL jars in $jars_dir"
}

require_tools
install_kinesis_local
check_kclpy_jars
