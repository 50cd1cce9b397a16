#!/usr/bin/env bash
# The demo end to end on a kind cluster (needs docker, kind, kubectl, curl, python3):
#
#   1. builds the server and client images from this repository and loads them into kind;
#   2. applies manifests/ in a namespace of its own and checks with `kubectl auth can-i`
#      that the RBAC grants exactly what it says (and rbac-convert.yaml likewise);
#   3. applies examples/demo/k8s (namespace "example") and waits for the rollouts;
#   4. port-forwards the client and checks that GET /getResponse names the 3 server pods;
#   5. restarts the servers (a rolling update) while calling /getResponse: no call may
#      fail, and afterwards the 3 new pods answer;
#   6. cleans up: deletes the cluster if it made it, else the namespaces it made.
#
# Exits non-zero on any failure, after printing the pods, events and logs.
#
# Settings (environment): KIND_CLUSTER (default dnsbalance-e2e; an existing cluster of
# that name is used and kept), KEEP_CLUSTER=1 (keep a cluster this script made),
# E2E_TIMEOUT (rollout timeout, default 300s), LOCAL_PORT (default 18080),
# E2E_ATTEMPTS (tries of /getResponse, 2 s apart, default 30), E2E_ROLLOUT=0 (skip step 5).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER=${KIND_CLUSTER:-dnsbalance-e2e}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
TIMEOUT=${E2E_TIMEOUT:-300s}
LOCAL_PORT=${LOCAL_PORT:-18080}
ATTEMPTS=${E2E_ATTEMPTS:-30}
ROLLOUT=${E2E_ROLLOUT:-1}
SERVER_IMAGE=dnsbalance-demo-server:dev
CLIENT_IMAGE=dnsbalance-demo-client:dev
NS=example
CHECK_NS=dnsbalance-manifests
SERVER_SELECTOR=app.kubernetes.io/name=grpc-server
KUBECTL=(kubectl --context "kind-${CLUSTER}")

log() { printf '[e2e] %s\n' "$*" >&2; }
die() {
  log "FAIL: $*"
  exit 1
}

for tool in docker kind kubectl curl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

created_cluster=0
created_namespaces=()
pf_pid=""
rollout_pid=""
pf_log=$(mktemp)

diagnostics() {
  log "diagnostics"
  "${KUBECTL[@]}" get pods,endpointslices,services -n "$NS" -o wide || true
  "${KUBECTL[@]}" get events -n "$NS" --sort-by=.lastTimestamp || true
  "${KUBECTL[@]}" logs -n "$NS" -l "$SERVER_SELECTOR" --tail=50 --prefix || true
  "${KUBECTL[@]}" logs -n "$NS" -l app.kubernetes.io/name=grpc-client --tail=100 --prefix || true
  if [ -s "$pf_log" ]; then cat "$pf_log" >&2; fi
}

cleanup() {
  local status=$?
  set +e
  stop_port_forward
  if [ -n "$rollout_pid" ]; then kill "$rollout_pid" 2>/dev/null; fi
  if [ "$status" -ne 0 ]; then diagnostics; fi
  if [ "$created_cluster" = 1 ] && [ "$KEEP_CLUSTER" != 1 ]; then
    log "deleting cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER"
  elif [ "${#created_namespaces[@]}" -gt 0 ]; then
    log "deleting namespaces ${created_namespaces[*]}"
    "${KUBECTL[@]}" delete namespace "${created_namespaces[@]}" --wait=false
  fi
  rm -f "$pf_log"
  if [ "$status" -eq 0 ]; then log "PASS"; fi
  exit "$status"
}
trap cleanup EXIT

stop_port_forward() {
  if [ -n "$pf_pid" ]; then
    kill "$pf_pid" 2>/dev/null || true
    wait "$pf_pid" 2>/dev/null || true
    pf_pid=""
  fi
}

# can_i EXPECTED NAMESPACE SERVICEACCOUNT VERB RESOURCE: `kubectl auth can-i`, impersonating.
can_i() {
  local expected=$1 namespace=$2 account=$3 verb=$4 resource=$5 answer
  answer=$("${KUBECTL[@]}" auth can-i "$verb" "$resource" -n "$namespace" \
    --as "system:serviceaccount:${CHECK_NS}:${account}" 2>/dev/null || true)
  [ "$answer" = "$expected" ] ||
    die "$account may $verb $resource in $namespace: expected '$expected', got '$answer'"
  log "  $account $verb $resource in $namespace: $answer"
}

# names_from_response JSON: the JSON list's values, one per line, sorted ("" if not a list).
names_from_response() {
  python3 -c '
import json, sys
try:
    values = json.loads(sys.argv[1])
except ValueError:
    values = None
if isinstance(values, list):
    print("\n".join(sorted(str(v) for v in values)))
' "$1"
}

# ready_server_pods: names of the server pods that are not terminating, sorted.
ready_server_pods() {
  "${KUBECTL[@]}" get pods -n "$NS" -l "$SERVER_SELECTOR" -o json | python3 -c '
import json, sys
pods = json.load(sys.stdin)["items"]
names = [
    p["metadata"]["name"]
    for p in pods
    if not p["metadata"].get("deletionTimestamp")
    and any(c["type"] == "Ready" and c["status"] == "True"
            for c in p.get("status", {}).get("conditions", []))
]
print("\n".join(sorted(names)))
'
}

# expect_all_servers ATTEMPTS: /getResponse names exactly the 3 ready server pods.
expect_all_servers() {
  local attempts=$1 body names pods i
  for ((i = 1; i <= attempts; i++)); do
    body=$(curl -fsS --max-time 30 "http://127.0.0.1:${LOCAL_PORT}/getResponse" || true)
    names=$(names_from_response "$body")
    pods=$(ready_server_pods || true)
    if [ -n "$names" ] && [ "$names" = "$pods" ] && [ "$(wc -l <<<"$names")" -eq 3 ]; then
      log "/getResponse -> $body (the 3 server pods)"
      return 0
    fi
    log "attempt $i/$attempts: /getResponse -> ${body:-no answer}; ready pods: $(tr '\n' ' ' <<<"$pods")"
    if ((i < attempts)); then sleep 2; fi
  done
  die "/getResponse did not name the 3 server pods"
}

# 1. images and cluster -------------------------------------------------------------
log "building $SERVER_IMAGE and $CLIENT_IMAGE"
docker build -f "$ROOT/examples/demo/Dockerfile.server" -t "$SERVER_IMAGE" "$ROOT"
docker build -f "$ROOT/examples/demo/Dockerfile.client" -t "$CLIENT_IMAGE" "$ROOT"

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "using the existing kind cluster $CLUSTER"
else
  log "creating the kind cluster $CLUSTER"
  created_cluster=1
  kind create cluster --name "$CLUSTER" --wait 180s
fi
kind load docker-image --name "$CLUSTER" "$SERVER_IMAGE" "$CLIENT_IMAGE"

# 2. manifests/ and its RBAC -----------------------------------------------------------
ensure_namespace() {
  if ! "${KUBECTL[@]}" get namespace "$1" >/dev/null 2>&1; then
    "${KUBECTL[@]}" create namespace "$1"
    created_namespaces+=("$1")
  fi
}
ensure_namespace "$CHECK_NS"
log "kubectl apply -k manifests/ -n $CHECK_NS"
"${KUBECTL[@]}" apply -k "$ROOT/manifests" -n "$CHECK_NS"
"${KUBECTL[@]}" apply -f "$ROOT/manifests/rbac-convert.yaml" -n "$CHECK_NS"
log "RBAC as granted:"
for verb in get list watch; do
  can_i yes "$CHECK_NS" dnsbalance "$verb" endpointslices.discovery.k8s.io
done
for verb in create update patch delete; do
  can_i no "$CHECK_NS" dnsbalance "$verb" endpointslices.discovery.k8s.io
done
for verb in get list create update delete; do
  can_i no "$CHECK_NS" dnsbalance "$verb" services
done
can_i no "$CHECK_NS" dnsbalance get secrets
can_i no default dnsbalance list endpointslices.discovery.k8s.io
for verb in get create update delete; do
  can_i yes "$CHECK_NS" dnsbalance-convert "$verb" services
done
for verb in list watch patch; do
  can_i no "$CHECK_NS" dnsbalance-convert "$verb" services
done
can_i no "$CHECK_NS" dnsbalance-convert list endpointslices.discovery.k8s.io
can_i no default dnsbalance-convert create services

# 3. the demo ---------------------------------------------------------------------
if ! "${KUBECTL[@]}" get namespace "$NS" >/dev/null 2>&1; then created_namespaces+=("$NS"); fi
log "kubectl apply -k examples/demo/k8s"
"${KUBECTL[@]}" apply -k "$ROOT/examples/demo/k8s"
"${KUBECTL[@]}" rollout status -n "$NS" deployment/grpc-server --timeout "$TIMEOUT"
"${KUBECTL[@]}" rollout status -n "$NS" deployment/grpc-client --timeout "$TIMEOUT"

# 4. the client, through a port-forward -------------------------------------------------
"${KUBECTL[@]}" port-forward -n "$NS" service/grpc-client-service "${LOCAL_PORT}:8080" \
  >"$pf_log" 2>&1 &
pf_pid=$!
for ((i = 1; i <= 60; i++)); do
  if curl -fsS --max-time 2 "http://127.0.0.1:${LOCAL_PORT}/healthz" >/dev/null 2>&1; then break; fi
  kill -0 "$pf_pid" 2>/dev/null || die "kubectl port-forward exited"
  [ "$i" -lt 60 ] || die "the client did not answer /healthz through the port-forward"
  sleep 0.5
done
expect_all_servers "$ATTEMPTS"

# 5. a rolling restart of the servers: no call may fail ---------------------------------------
if [ "$ROLLOUT" = 1 ]; then
  log "rolling restart of the servers, calling /getResponse meanwhile"
  "${KUBECTL[@]}" rollout restart -n "$NS" deployment/grpc-server
  "${KUBECTL[@]}" rollout status -n "$NS" deployment/grpc-server --timeout "$TIMEOUT" &
  rollout_pid=$!
  calls=0
  failures=0
  while kill -0 "$rollout_pid" 2>/dev/null && [ "$calls" -lt 600 ]; do
    if ! curl -fsS --max-time 30 "http://127.0.0.1:${LOCAL_PORT}/getResponse" >/dev/null; then
      failures=$((failures + 1))
    fi
    calls=$((calls + 1))
    sleep 0.2
  done
  wait "$rollout_pid" || die "the servers' rollout did not finish"
  rollout_pid=""
  log "during the rollout: $calls requests (10 calls each), $failures failed"
  [ "$failures" -eq 0 ] || die "$failures of $calls requests failed during the rolling restart"
  expect_all_servers "$ATTEMPTS"
fi
