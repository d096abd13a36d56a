#!/usr/bin/env bash
# Runs the archive with the synthetic demo data on embedded defaults (SQLite + files under
# ./pacs-data), after installing what building needs on a fresh Debian machine when it is
# missing (a C/C++ toolchain and cmake: CharLS, the JPEG-LS decoder of the rendering, is
# C++ built by cmake). Arguments are passed to `pacs serve --demo` (e.g. --http-port 8081).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
need=()
command -v cc >/dev/null || need+=(build-essential)
command -v g++ >/dev/null || need+=(g++)
command -v cmake >/dev/null || need+=(cmake)
if [[ ${#need[@]} -gt 0 ]]; then
  echo "demo: installing build tools: ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || {
  echo "demo: cargo is missing: install Rust from https://rustup.rs and run this again" >&2
  exit 1
}
exec cargo run --release -- serve --demo "$@"
