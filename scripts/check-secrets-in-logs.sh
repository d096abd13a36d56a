#!/usr/bin/env bash
# Checks that no log of a test run contains a secret the tests used or were given.
#
#   scripts/check-secrets-in-logs.sh RUN_DIR
#
# RUN_DIR (tests/e2e/support.rs, `run_dir()`) holds `logs/` — the stderr of every `pacs`
# command and the whole output of every `pacs serve` the end-to-end tests ran — and
# `secrets/` — every password, API token, session cookie and CSRF token they used or
# received. Secrets shorter than 12 characters are ignored (no real one is that short, and
# a forged "x" would match everywhere). Prints one `test … ok/FAILED` line like cargo's;
# exits 1 when a log holds a secret, naming the file and the start of the secret.
set -euo pipefail
dir=${1:?usage: check-secrets-in-logs.sh RUN_DIR}
secrets=$(mktemp)
one=$(mktemp)
trap 'rm -f "$secrets" "$one"' EXIT
if [ -d "$dir/secrets" ]; then
    find "$dir/secrets" -type f -exec cat {} + | awk 'length($0) >= 12' | sort -u >"$secrets"
fi
nsecrets=$(wc -l <"$secrets")
nlogs=$(find "$dir/logs" -type f 2>/dev/null | wc -l)
if [ "$nsecrets" -eq 0 ] || [ "$nlogs" -eq 0 ]; then
    echo "test secrets_in_logs ... FAILED: nothing to check ($nsecrets secrets, $nlogs logs in $dir): did the end-to-end tests run?"
    exit 1
fi
found=0
# Logs that hold any of them first (one pass), then which one (for the message). A secret
# is looked for by its first 1024 characters: part of one in a log is a leak too, and a
# megabyte-long test password would not fit on a command line.
if grep -rqF -f <(cut -c1-1024 "$secrets") "$dir/logs"; then
    while IFS= read -r secret; do
        printf '%s\n' "${secret:0:1024}" >"$one"
        while IFS= read -r file; do
            echo "  ${file#"$dir"/} contains a secret starting ${secret:0:6}…"
            found=1
        done < <(grep -rlF -f "$one" "$dir/logs" || true)
    done <"$secrets"
fi
if [ "$found" -ne 0 ]; then
    echo "test secrets_in_logs ... FAILED"
    exit 1
fi
echo "test secrets_in_logs ... ok ($nsecrets secrets, none in $nlogs log files)"
