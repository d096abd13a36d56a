#!/usr/bin/env bash
# Runs the archive with the synthetic demo data on embedded defaults (SQLite + files under
# ./pacs-data) and the web viewer at http://127.0.0.1:8080/, after installing what building
# needs on a fresh Debian machine when it is missing (a C/C++ toolchain and cmake: CharLS,
# the JPEG-LS decoder of the rendering, is C++ built by cmake; Node.js and npm for the
# viewer, built into viewer-web/dist, which `pacs serve` serves). Arguments are passed to
# `pacs serve --demo` (e.g. --http-port 8081).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
need=()
command -v cc >/dev/null || need+=(build-essential)
command -v g++ >/dev/null || need+=(g++)
command -v cmake >/dev/null || need+=(cmake)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [[ ${#need[@]} -gt 0 ]]; then
  echo "demo: installing build tools: ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || {
  echo "demo: cargo is missing: install Rust from https://rustup.rs and run this again" >&2
  exit 1
}
# The web viewer: dependencies when the lock file changed, then the build (a few seconds).
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "demo: Node.js $(node --version) is too old to build the viewer (Vite 8 needs 20.19 or newer)" >&2
  exit 1
fi
if [[ ! -f viewer-web/node_modules/.package-lock.json || viewer-web/package-lock.json -nt viewer-web/node_modules/.package-lock.json ]]; then
  echo "demo: installing the web viewer's packages (npm ci in viewer-web)" >&2
  (cd viewer-web && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "demo: building the web viewer (npm run build in viewer-web)" >&2
(cd viewer-web && npm run build --silent >/dev/null)
# `pacs serve` prints the viewer's address (pacs: viewer …) and the demo logins.
exec cargo run --release -- serve --demo "$@"
