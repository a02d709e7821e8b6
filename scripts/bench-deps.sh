#!/usr/bin/env bash
# Installs what the analyzer benchmark (benches/analyze.rs) compares against, idempotently:
#   - .venv-bench/ with trailscraper (PyPI, Apache-2.0, the open-source CloudTrail-to-policy
#     generator) and its dependencies pinned to versions checked on Python 3.11.
# Kept apart from scripts/test-deps.sh and .venv: the test suite never needs it. `make bench` runs
# it first; re-running is cheap (skipped when the stamp matches).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-bench
PY_PACKAGES=(
  "trailscraper==0.10.0"
  "boto3==1.38.3"
  "botocore==1.38.46"
  "click==8.1.8"
  "dateparser==1.2.1"
  "python-dateutil==2.9.0.post0"
  "pytz==2025.2"
  "ruamel.yaml==0.18.10"
  "toolz==1.0.0"
)
stamp="$VENV/.stamp-$(printf '%s\n' "${PY_PACKAGES[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bench-deps: creating $VENV with ${PY_PACKAGES[*]}"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
  "$VENV/bin/trailscraper" --version
  touch "$stamp"
fi
