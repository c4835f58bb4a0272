#!/usr/bin/env bash
# Install the pinned Node tools of the top-level package.json (the aws-cdk CLI) into ./node_modules,
# exactly as package-lock.json says, so `npx cdk synth` uses the project's CLI and never a global one.
# Idempotent: skips npm when node_modules already holds the locked CLI version.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

fail() { echo "install-node: $*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || fail "node not found: install Node.js 20 or later (apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || fail "npm not found: install npm (apt-get install npm)"
[[ -f package-lock.json ]] || fail "package-lock.json missing: run 'npm install' once and commit it"

locked="$(node -p "require('./package-lock.json').packages['node_modules/aws-cdk'].version")"
installed="$(node -p "try { require('./node_modules/aws-cdk/package.json').version } catch (e) { '' }")"
if [[ "$installed" == "$locked" ]]; then
  echo "install-node: aws-cdk $locked already in node_modules"
else
  npm ci --no-audit --no-fund >/dev/null
  echo "install-node: installed aws-cdk $locked into node_modules"
fi
npx --no-install cdk --version >/dev/null || fail "npx cdk does not run after npm ci"
