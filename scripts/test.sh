#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: creates .venv, installs mailgate with its test
# tools, installs the real servers the tests use where they are missing, then lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

# Real servers: Dovecot for the IMAP tests (started by the tests themselves on loopback ports).
if ! command -v dovecot >/dev/null 2>&1 && [ ! -x /usr/sbin/dovecot ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
  else
    echo "note: dovecot-imapd is not installed and cannot be installed here; IMAP tests will say why they skip" >&2
  fi
fi

# Headless Chromium for the HTML report test (it renders the report and screenshots it).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium is not installed and cannot be installed here; the HTML report test will say why it skips" >&2
  fi
fi

echo "== ruff"
.venv/bin/ruff check mailgate tests
echo "== mypy --strict mailgate"
.venv/bin/mypy --strict mailgate
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
