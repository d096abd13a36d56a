#!/usr/bin/env bash
# The whole test suite, on a fresh machine or an old one:
#   1. installs what the build and tests need when missing: dcmtk, PostgreSQL, OpenJPEG
#      tools, curl, cmake and g++ (CharLS, the JPEG-LS decoder of the rendering, is C++
#      built by cmake), rsyslog with its TLS driver, Chromium and a CJK font for the
#      browser tests, DejaVu Sans and poppler-utils for the report PDF tests, Node.js
#      and npm (Debian packages), pynetdicom + pydicom + dicomweb-client (PyPI), Garage
#      (crates.io, built once and cached in ~/.cargo/bin: ~15-20 min the first time);
#      builds the web viewer (viewer-web: `npm ci`, then `npm run build`, which
#      type-checks and bundles it into viewer-web/dist);
#   2. starts a private PostgreSQL and a single-node Garage on free loopback ports;
#   3. runs formatting and lint checks, then every test (unit, contract, end-to-end);
#   4. stops what it started.
# Nothing is skipped: a test whose peer is missing fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '\n== %s\n' "$*" >&2; }

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

# --- 1. install ------------------------------------------------------------------------
need_apt=()
[[ -x /usr/bin/storescu && -x /usr/bin/dcmsend && -x /usr/bin/dcmdump ]] || need_apt+=(dcmtk)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
command -v opj_decompress >/dev/null || need_apt+=(libopenjp2-tools)
command -v curl >/dev/null || need_apt+=(curl)
# rsyslog with its GnuTLS driver: the syslog-over-TLS server the audit forwarding tests use.
[[ -x /usr/sbin/rsyslogd ]] || need_apt+=(rsyslog)
compgen -G "/usr/lib/*/rsyslog/lmnsd_gtls.so" >/dev/null || compgen -G "/usr/lib/rsyslog/lmnsd_gtls.so" >/dev/null \
  || need_apt+=(rsyslog-gnutls)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v cc >/dev/null || need_apt+=(build-essential)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
# The browser of the viewer tests: Debian's Chromium, driven by playwright-core (never a
# browser downloaded by Playwright), and a font with Chinese glyphs for the screenshots.
[[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
[[ -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ]] || need_apt+=(fonts-droid-fallback)
# The report PDFs (pacs-store reports::pdf): DejaVu Sans for Latin text beside the CJK font
# above; poppler-utils (pdftotext, pdfinfo, pdffonts, pdfimages) reads them back in the tests.
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || need_apt+=(fonts-dejavu-core)
command -v pdftotext >/dev/null || need_apt+=(poppler-utils)
# Node.js and npm build the viewer and run the browser script.
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if [[ ${#need_apt[@]} -gt 0 ]]; then
  log "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY_PEERS=('pynetdicom==3.0.4' 'pydicom==3.0.2' 'dicomweb-client==0.59.3')
if ! python3 -c 'import pynetdicom, pydicom, dicomweb_client' 2>/dev/null; then
  log "installing the Python peers: ${PY_PEERS[*]}"
  python3 -m pip install --quiet "${PY_PEERS[@]}" \
    || python3 -m pip install --quiet --break-system-packages "${PY_PEERS[@]}"
fi

# The web viewer: served by `pacs serve` from viewer-web/dist, tested in Chromium by
# tests/e2e/viewer.rs. Vite 8 needs Node.js 20.19 or newer.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "Node.js $(node --version) is too old for the viewer's build (Vite 8 needs 20.19 or newer)" >&2
  exit 1
fi
log "building the web viewer (npm ci, npm run build in viewer-web; node $(node --version))"
(cd viewer-web && npm ci --no-audit --no-fund --loglevel=error && npm run build)

GARAGE_BIN="$(command -v garage || true)"
[[ -n "$GARAGE_BIN" ]] || GARAGE_BIN="$HOME/.cargo/bin/garage"
if [[ ! -x "$GARAGE_BIN" ]] || ! "$GARAGE_BIN" --version 2>/dev/null | grep -q 'cargo:2\.'; then
  log "building Garage 2.5.0 (S3 server for the tests; once, then cached in ~/.cargo/bin)"
  cargo install garage --version 2.5.0 --locked --quiet
fi

# --- 2. services -----------------------------------------------------------------------
WORK=$(mktemp -d /tmp/pacs-test.XXXXXX)
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PG_DIR="$WORK/pg"
GARAGE_DIR="$WORK/garage"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
  set +e
  if [[ -f "$PG_DIR/data/postmaster.pid" ]]; then as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1; fi
  if [[ -f "$GARAGE_DIR/garage.pid" ]]; then kill "$(cat "$GARAGE_DIR/garage.pid")" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

log "starting PostgreSQL ($PG_BIN) on a private port"
mkdir -p "$PG_DIR"
if [[ $(id -u) -eq 0 ]]; then chown postgres "$PG_DIR"; chmod 755 "$WORK"; fi
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U pacs >/dev/null
PG_PORT=$(free_port)
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
export PACS_TEST_POSTGRES_URL="postgres://pacs@127.0.0.1:$PG_PORT/postgres"

log "starting Garage (S3 with signature checks) on a private port"
eval "$(scripts/garage-start.sh "$GARAGE_DIR" PACS_TEST_S3)"

# --- 3. checks and tests ---------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "cargo test (unit, contract and end-to-end tests)"
# Every log the end-to-end tests produce, and every secret they use, for the check below.
export PACS_TEST_RUN_DIR="$WORK/run"
set +e
cargo test --workspace --all-targets 2>&1 | tee "$WORK/test.log"
status=${PIPESTATUS[0]}

log "no password, token, cookie or CSRF token in the log output of the whole run"
# The checker must be able to fail: first on a planted secret, then on the real run.
canary="$WORK/canary"
mkdir -p "$canary/logs" "$canary/secrets"
echo "planted-secret-0123456789" >"$canary/secrets/a.txt"
echo "INFO something planted-secret-0123456789 leaked" >"$canary/logs/serve.log"
if scripts/check-secrets-in-logs.sh "$canary" >/dev/null; then
  echo "test secrets_in_logs_self_check ... FAILED (a planted secret went unnoticed)" | tee -a "$WORK/test.log"
  status=1
else
  echo "test secrets_in_logs_self_check ... ok" | tee -a "$WORK/test.log"
fi
scripts/check-secrets-in-logs.sh "$PACS_TEST_RUN_DIR" | tee -a "$WORK/test.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
set -e
# One closing line for the whole run (cargo prints one per test binary, the last of which
# may be a binary without tests; the log check's lines count as tests too).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     /^test secrets_in_logs/ { if ($0 ~ / \.\.\. ok/) p++; else f++ }
     END { printf "\n%d passed, %d failed\n", p, f }' "$WORK/test.log"
exit "$status"
