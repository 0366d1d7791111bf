# Shared by cluster/local_two_node.sh and cluster/two_node_sweep.sh: a Ray cluster of one or
# two raylets on this machine, each with its own fresh --temp-dir and free ports, stopped by
# killing only the processes of those temp dirs (never `ray stop`, which stops every Ray
# instance of the user on the machine, other people's and other tests' included).
#
# Source it after `cd` to the repository root; then:
#   cluster_start [NODES]      NODES=2 (default) or 1; CPUs per node: CLUL_HEAD_CPUS and
#                              CLUL_NODE2_CPUS (1 each). Sets PORT, DASH, HEAD_TMP, NODE2_TMP
#                              and exports RAY_ADDRESS (the dashboard: the Jobs API).
#   cluster_stop               kill this cluster's processes (also run by the EXIT trap that
#                              cluster_start sets, through cluster_cleanup)
#   job_submit NAME LOGDIR RUNTIME_ENV_JSON -- ARGV...
#                              one Ray job (--working-dir .), waited for; its log in
#                              LOGDIR/NAME.log, its last JSON line in LOGDIR/NAME.json;
#                              returns 1 unless it SUCCEEDED
# Two clusters started this way never share a temp dir, a port or an address file (Ray
# writes `ray_current_cluster` into the head's temp dir, so a plain `ray.init()` elsewhere
# still starts its own instance). On a machine shared with other runs, start it under
# `flock /tmp/clul-cluster.lock ...` so that two such clusters do not compete for the CPUs.
#
# Auth: every process here runs with RAY_AUTH_MODE=token; `ray start --head` writes the
# token to ~/.ray/auth_token (generated if missing), which the second node and `ray job
# submit` read.

export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token

free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

HEAD_TMP=
NODE2_TMP=
CLUSTER_EXIT_HOOKS=()

_kill_tree_of() {  # every process of this user whose command line or cwd is under $1
  local dir=$1 pid cwd
  [ -n "$dir" ] || return 0
  pkill -9 -u "$(id -u)" -f -- "$dir" 2>/dev/null || true
  for pid in $(pgrep -u "$(id -u)"); do
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || continue
    [[ $cwd == "$dir"/* ]] && kill -9 "$pid" 2>/dev/null
  done
  return 0
}

cluster_stop() {
  _kill_tree_of "$NODE2_TMP"
  _kill_tree_of "$HEAD_TMP"
  [ -n "$NODE2_TMP" ] && rm -rf "$NODE2_TMP"
  [ -n "$HEAD_TMP" ] && rm -rf "$HEAD_TMP"
  NODE2_TMP= HEAD_TMP=
}

cluster_cleanup() {
  local hook
  for hook in "${CLUSTER_EXIT_HOOKS[@]}"; do $hook || true; done
  cluster_stop
}

cluster_start() {
  local nodes=${1:-2}
  trap cluster_cleanup EXIT
  PORT=${CLUL_RAY_PORT:-$(free_port)}
  DASH=${CLUL_DASH_PORT:-$(free_port)}
  HEAD_TMP=$(mktemp -d /tmp/ray_head.XXXXXX)
  ray start --head --port "$PORT" --num-cpus "${CLUL_HEAD_CPUS:-1}" --include-dashboard true \
    --dashboard-port "$DASH" --temp-dir "$HEAD_TMP" --disable-usage-stats \
    --ray-client-server-port "$(free_port)" --node-manager-port "$(free_port)" \
    --object-manager-port "$(free_port)" --dashboard-agent-listen-port "$(free_port)" \
    --dashboard-agent-grpc-port "$(free_port)" --runtime-env-agent-port "$(free_port)" \
    --metrics-export-port "$(free_port)" >/dev/null
  if [ "$nodes" = 2 ]; then
    # a second raylet on the same host needs its own temp dir and agent / metrics ports
    NODE2_TMP=$(mktemp -d /tmp/ray_node2.XXXXXX)
    ray start --address "127.0.0.1:$PORT" --num-cpus "${CLUL_NODE2_CPUS:-1}" \
      --resources '{"clul_worker_node": 1}' --temp-dir "$NODE2_TMP" \
      --node-manager-port "$(free_port)" --object-manager-port "$(free_port)" \
      --dashboard-agent-listen-port "$(free_port)" --dashboard-agent-grpc-port "$(free_port)" \
      --runtime-env-agent-port "$(free_port)" --metrics-export-port "$(free_port)" \
      --disable-usage-stats >/dev/null
  fi
  python - "$PORT" "$nodes" <<'PY'
import sys
import time

import ray

ray.init(address=f"127.0.0.1:{sys.argv[1]}", logging_level="ERROR")
for _ in range(60):
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) == int(sys.argv[2]):
        break
    time.sleep(1)
print("   nodes:", [(n["NodeID"][:12], n["Resources"].get("CPU")) for n in alive])
assert len(alive) == int(sys.argv[2]), alive
PY
  export RAY_ADDRESS="http://127.0.0.1:$DASH"
}

job_submit() {  # job_submit NAME LOGDIR RUNTIME_ENV_JSON -- ARGV...
  local name=$1 logdir=$2 env=$3; shift 4
  local id="clul-$name-$(date +%s)-$$"
  local t0=$SECONDS status
  ray job submit --submission-id "$id" --working-dir . --runtime-env-json "$env" \
    --entrypoint-num-cpus 0 -- "$@" > "$logdir/$name.log" 2>&1 || true
  grep '^{' "$logdir/$name.log" | tail -1 > "$logdir/$name.json" || true
  status=$(ray job status "$id" 2>&1 || true)
  JOB_SECONDS=$(( SECONDS - t0 ))
  if [[ $status != *"Job '$id' succeeded"* ]]; then
    echo "job $id ($name) did not succeed: ${status##*$'\n'}; its log:" >&2
    tail -30 "$logdir/$name.log" >&2
    return 1
  fi
  echo "   job $id succeeded in $JOB_SECONDS s"
}
