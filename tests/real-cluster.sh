#!/usr/bin/env bash
# The end-to-end scenario against a real Kubernetes cluster (kind, k3d, or any test cluster).
# Runs only when KUBECONFIG is set; otherwise it says so and exits 0. Never part of `make test`
# unless you set KUBECONFIG yourself (`make real-cluster`).
#
# What it does, in a namespace of its own (default autoguardrails-e2e):
#   1. applies crds/ and waits until both CRDs are Established;
#   2. installs charts/autoguardrails (helm if present, else the chart rendered by
#      scripts/helm.py and applied with kubectl) with 2 replicas, the in-memory AWS backend and
#      an /events API key Secret;
#   3. checks the pods run non-root with a read-only root filesystem, that exactly one replica
#      holds the Lease, and that the ServiceAccount's RBAC allows what the controller needs and
#      refuses what it must not have (kubectl auth can-i, evaluated by the real authorizer);
#   4. applies a Manual policy, delivers a Cost Anomaly EventBridge event to POST /events through
#      a port-forward, waits for the Quarantine in PendingApproval, approves it, waits for Active,
#      releases it, waits for Released;
#   5. deletes the leader pod and measures how long until the other replica holds the Lease;
#   6. removes everything (set AGR_KEEP=1 to keep it).
#
# Needs: kubectl, curl, and an image the cluster can pull. Build and load it first, e.g.
#   docker build -t autoguardrails:dev . && kind load docker-image autoguardrails:dev
# and pass AGR_IMAGE=autoguardrails:dev (default). Knobs: AGR_NAMESPACE, AGR_RELEASE,
# AGR_TIMEOUT (seconds per wait, default 120), AGR_KEEP.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${KUBECONFIG:-}" ]; then
  echo "real-cluster: SKIPPED — KUBECONFIG is not set. Point it at a kind/k3d cluster to run the"
  echo "real-cluster suite (see docs/install.md, 'Testing against a real cluster')."
  exit 0
fi

NAMESPACE=${AGR_NAMESPACE:-autoguardrails-e2e}
RELEASE=${AGR_RELEASE:-agr}
IMAGE=${AGR_IMAGE:-autoguardrails:dev}
TIMEOUT=${AGR_TIMEOUT:-120}
FULLNAME="$RELEASE-autoguardrails"
SERVICE_ACCOUNT="system:serviceaccount:$NAMESPACE:$FULLNAME"
API_KEY="e2e-$(date +%s)-$RANDOM"
KUBECTL=${KUBECTL:-kubectl}
if ! command -v "$KUBECTL" >/dev/null 2>&1 && [ -x .venv/bin/kubectl ]; then KUBECTL=.venv/bin/kubectl; fi

step() { printf '\n=== %s\n' "$*"; }
fail() { echo "real-cluster: FAILED: $*" >&2; exit 1; }
k() { "$KUBECTL" "$@"; }
kn() { "$KUBECTL" -n "$NAMESPACE" "$@"; }
wait_for() { # wait_for DESCRIPTION COMMAND...: retry COMMAND until it succeeds or TIMEOUT
  local description=$1; shift
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out after ${TIMEOUT}s waiting for $description"
    sleep 1
  done
}
PORT_FORWARD_PID=""
cleanup() {
  [ -n "$PORT_FORWARD_PID" ] && kill "$PORT_FORWARD_PID" 2>/dev/null || true
  if [ -z "${AGR_KEEP:-}" ]; then
    step "cleanup (AGR_KEEP=1 keeps everything)"
    if command -v helm >/dev/null 2>&1; then helm uninstall "$RELEASE" -n "$NAMESPACE" >/dev/null 2>&1 || true; fi
    k delete namespace "$NAMESPACE" --wait=false >/dev/null 2>&1 || true
    k delete clusterrole,clusterrolebinding "$FULLNAME" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

step "cluster"
k version || fail "cannot reach the cluster in KUBECONFIG=$KUBECONFIG"

step "CRDs"
k apply -f crds/
k wait --for=condition=Established --timeout="${TIMEOUT}s" \
  crd/guardrailpolicies.autoguardrails.io crd/quarantines.autoguardrails.io

step "namespace and the /events API key Secret"
k create namespace "$NAMESPACE" --dry-run=client -o yaml | k apply -f -
kn create secret generic autoguardrails-events-key --from-literal=api-key="$API_KEY" \
  --dry-run=client -o yaml | kn apply -f -

VALUES=$(cat <<JSON
{"image":{"repository":"${IMAGE%:*}","tag":"${IMAGE##*:}","pullPolicy":"IfNotPresent"},
 "replicaCount":2,
 "controller":{"clusterId":"real-cluster-e2e","awsBackend":"memory","logFormat":"text","driftPeriod":"5s"},
 "signals":{"events":{"apiKeySecret":{"name":"autoguardrails-events-key","key":"api-key"}}}}
JSON
)

step "chart"
if command -v helm >/dev/null 2>&1; then
  values_file=$(mktemp)
  echo "$VALUES" >"$values_file"
  helm upgrade --install "$RELEASE" charts/autoguardrails -n "$NAMESPACE" \
    --skip-crds -f "$values_file" --wait --timeout "${TIMEOUT}s"
  rm -f "$values_file"
elif [ -x .venv/bin/python ]; then
  echo "(no helm binary: rendering with scripts/helm.py and applying with kubectl)"
  .venv/bin/python scripts/helm.py template --name "$RELEASE" --namespace "$NAMESPACE" \
    --set-json "$VALUES" | kn apply -f -
else
  fail "neither helm nor .venv/bin/python (run make deps) is available to install the chart;
  install helm and run: helm install $RELEASE charts/autoguardrails -n $NAMESPACE --set image.repository=${IMAGE%:*},image.tag=${IMAGE##*:}"
fi
kn rollout status "deployment/$FULLNAME" --timeout="${TIMEOUT}s"

step "pod security"
for pod in $(kn get pods -l "app.kubernetes.io/instance=$RELEASE" -o name); do
  read_only=$(kn get "$pod" -o jsonpath='{.spec.containers[0].securityContext.readOnlyRootFilesystem}')
  non_root=$(kn get "$pod" -o jsonpath='{.spec.securityContext.runAsNonRoot}')
  [ "$read_only" = true ] && [ "$non_root" = true ] || fail "$pod: readOnlyRootFilesystem=$read_only runAsNonRoot=$non_root"
  echo "$pod: non-root, read-only root filesystem"
done

step "leader election: exactly one holder"
wait_for "a Lease holder" sh -c "[ -n \"\$($KUBECTL -n $NAMESPACE get lease autoguardrails -o jsonpath='{.spec.holderIdentity}')\" ]"
LEADER=$(kn get lease autoguardrails -o jsonpath='{.spec.holderIdentity}')
echo "leader: $LEADER"
kn get pod "$LEADER" >/dev/null || fail "the Lease holder $LEADER is not a pod of this release"

step "RBAC (kubectl auth can-i as $SERVICE_ACCOUNT)"
can() { k auth can-i --as="$SERVICE_ACCOUNT" "$@" 2>/dev/null; }
for check in \
  "list guardrailpolicies.autoguardrails.io --all-namespaces" \
  "watch quarantines.autoguardrails.io --all-namespaces" \
  "patch quarantines.autoguardrails.io --subresource=status -n default" \
  "create quarantines.autoguardrails.io -n default" \
  "create events.events.k8s.io -n default" \
  "update leases.coordination.k8s.io/autoguardrails -n $NAMESPACE" \
  "get secrets/autoguardrails-events-key -n $NAMESPACE"; do
  # shellcheck disable=SC2086
  [ "$(can $check)" = yes ] || fail "the controller may not: $check"
  echo "allowed: $check"
done
for check in \
  "delete quarantines.autoguardrails.io -n default" \
  "list secrets -n $NAMESPACE" \
  "get secrets/some-other-secret -n default" \
  "update leases.coordination.k8s.io/autoguardrails -n default" \
  "create namespaces" \
  "patch guardrailpolicies.autoguardrails.io -n default" \
  "update quarantines.autoguardrails.io -n default"; do
  # shellcheck disable=SC2086
  [ "$(can $check)" = no ] || fail "the controller may, but must not: $check"
  echo "refused: $check"
done

step "policy (Manual mode, account 111111111111, VPC anomalies over USD 100)"
kn apply -f - <<YAML
apiVersion: autoguardrails.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: e2e-nat-spike
spec:
  mode: Manual
  match:
    sources: [CostAnomaly]
    accountIds: ["111111111111"]
    minImpactUsd: 100
  scope:
    principals:
      - { kind: IamRole, arn: "arn:aws:iam::111111111111:role/e2e-ci" }
  deny:
    actions: ["ec2:CreateNatGateway", "ec2:RunInstances"]
  quarantine:
    ttl: 1h
    approvalTimeout: 30m
    cooldown: 1m
YAML

step "signal: POST /events (EventBridge Cost Anomaly event) through a port-forward"
kn port-forward "svc/$FULLNAME-signals" 18081:80 >/dev/null 2>&1 &
PORT_FORWARD_PID=$!
wait_for "the port-forward" curl -s -o /dev/null http://127.0.0.1:18081/
ANOMALY_ID="e2e-$(date +%s)"
sed "s/eb-0000-1111-2222/$ANOMALY_ID/g; s/\"time\": \"[^\"]*\"/\"time\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"/" \
  tests/fixtures/signals/eventbridge-anomaly.json >"/tmp/agr-e2e-event.json"
status=$(curl -s -o /tmp/agr-e2e-response -w '%{http_code}' -X POST http://127.0.0.1:18081/events \
  -H "x-api-key: $API_KEY" -H 'content-type: application/json' --data-binary @/tmp/agr-e2e-event.json)
echo "POST /events → $status $(cat /tmp/agr-e2e-response)"
case "$status" in 2*) ;; *) fail "POST /events answered $status" ;; esac

step "Quarantine: PendingApproval → approve → Active → release → Released"
wait_for "a Quarantine" sh -c "[ -n \"\$($KUBECTL -n $NAMESPACE get quarantines -o name)\" ]"
QUARANTINE=$(kn get quarantines -o name | head -1)
echo "$QUARANTINE"
phase() { kn get "$QUARANTINE" -o jsonpath='{.status.phase}'; }
wait_phase() { wait_for "$QUARANTINE in phase $1" sh -c "[ \"\$($KUBECTL -n $NAMESPACE get $QUARANTINE -o jsonpath='{.status.phase}')\" = $1 ]"; echo "phase: $(phase)"; }
wait_phase PendingApproval
kn annotate "$QUARANTINE" autoguardrails.io/approve="e2e approval"
wait_phase Active
kn annotate "$QUARANTINE" autoguardrails.io/release="e2e release"
wait_phase Released
kn get events --field-selector "involvedObject.name=${QUARANTINE#*/}" || true

step "leader failover: delete the leader pod"
LEADER=$(kn get lease autoguardrails -o jsonpath='{.spec.holderIdentity}')
started=$(date +%s%N)
kn delete pod "$LEADER" --wait=false
wait_for "a new Lease holder" sh -c "h=\$($KUBECTL -n $NAMESPACE get lease autoguardrails -o jsonpath='{.spec.holderIdentity}'); [ -n \"\$h\" ] && [ \"\$h\" != $LEADER ]"
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
echo "leader takeover after deleting $LEADER: ${elapsed_ms} ms (new leader: $(kn get lease autoguardrails -o jsonpath='{.spec.holderIdentity}'))"

echo
echo "real-cluster: PASSED"
