#!/usr/bin/env bash
# Local demo, no cloud account and no cluster: builds the binary and runs `simulate` for every
# example policy against the signals its comments name, printing each decision and IAM document.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --bin autoguardrails
bin=target/debug/autoguardrails
for policy in policies/*.yaml; do
  grep '^# simulate:' "$policy" | while read -r _ _ args; do
    spec=${args%%=>*}
    expected=${args##*=> }
    read -r signal flags <<<"$spec"
    echo "================================================================"
    echo "policy $policy  signal policies/$signal  $flags  (expect $expected)"
    echo "----------------------------------------------------------------"
    # shellcheck disable=SC2086
    "$bin" simulate --policy "$policy" --signal "policies/$signal" $flags
  done
done
echo "================================================================"
echo "Converted flat policy:"
"$bin" policy convert policies/legacy-flat-ci.yaml --namespace autoguardrails
