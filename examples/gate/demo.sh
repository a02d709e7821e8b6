#!/usr/bin/env bash
# The deployment gate on the bundled seed data (file sources, no Prometheus, no cloud): the real
# decision with its trace and explanation, then simulated inputs for each verdict. Exit codes
# 0 allow/warn, 1 delay, 2 block are expected here; anything else (3: configuration) fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=./target/debug/autoguardrails
[ -x "$BIN" ] || cargo build -q --bin autoguardrails
AUDIT=target/gate-demo-audit
run() {
  echo
  echo "\$ autoguardrails gate --config examples/gate/gate.yaml --at 2026-02-21T00:00:00Z $*"
  "$BIN" gate --config examples/gate/gate.yaml --at 2026-02-21T00:00:00Z --audit-dir "$AUDIT" "$@"
  code=$?
  echo "(exit $code)"
  if [ "$code" -gt 2 ]; then exit "$code"; fi
}
echo "== Deployment gate on examples/gate (seed data: 2100 failed of 2592000 requests, 30 days of cost)"
run --explain
run simulate --set errorBudgetPct=80
run simulate --set errorBudgetPct=80 --set costSpikePct=25
run simulate --set errorBudgetPct=80 --set burn_rate=NoData
run simulate --set errorBudgetPct=15 --set burnRateValue=6
echo
echo "\$ autoguardrails gate audit --audit-dir $AUDIT --limit 5"
"$BIN" gate audit --audit-dir "$AUDIT" --limit 5
exit 0
