#!/usr/bin/env bash
# A two-node Ray cluster on this one machine, driven through Ray Jobs:
#   head  (1 CPU)  + worker node (1 CPU, custom resource {"clul_worker_node": 1})
#   1. ray job submit  clul-ray train  (4 shards: tasks land on both nodes)
#   2. ray job submit  clul-ray delete (a second job on the same root)
#   3. ray stop
# Usage: cluster/local_two_node.sh [ROOT]     (default: a fresh temp folder)
# Both "nodes" see the same disk, so the local root is declared shared (--shared-storage);
# without it clul-ray refuses a local root on a multi-node cluster.
#
# Needs ray[default] (the dashboard hosts the Jobs API that `ray job submit` talks to);
# this project's venv has ray[train,tune,data] only, so `pip install "ray[default]"` first.
# `ray stop` at the end stops every Ray instance of this user on the machine, so the script
# refuses to start when another one is running.
# STATUS: written against Ray 2.60's CLI but not run end to end in this repository's
# sandbox (no ray[default] there); treat it as a recipe until it has been run.
#
# Auth: Ray 2.60 local clusters use token auth by default. `ray start --head` writes the
# token to ~/.ray/auth_token (generated if missing); `ray start --address` and
# `ray job submit` read it from there, or from RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH.
# We export RAY_AUTH_TOKEN_PATH explicitly so the clients use the head's token.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CLUL_BIN:-$PWD/.venv/bin}
export PATH="$BIN:$PATH" RAY_USAGE_STATS_ENABLED=0
PORT=${CLUL_RAY_PORT:-6391}
DASH=${CLUL_DASH_PORT:-8271}
ROOT=${1:-$(mktemp -d /tmp/clul_two_node.XXXXXX)/root}
TMP_HEAD=$(mktemp -d /tmp/ray_head.XXXXXX)
OUT=${CLUL_OUT:-$(dirname "$ROOT")}
mkdir -p "$OUT"

python -c "import aiohttp_cors" 2>/dev/null || {
  echo "needs ray[default] for the dashboard / Jobs API: pip install 'ray[default]'" >&2
  exit 2; }
if pgrep -u "$(id -u)" -x raylet >/dev/null; then
  echo "another Ray instance of this user is running; stop it first (ray stop)" >&2
  exit 2
fi
cleanup() { ray stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "== head node (1 CPU) on port $PORT, dashboard $DASH"
ray start --head --port "$PORT" --num-cpus 1 --include-dashboard true \
  --dashboard-port "$DASH" --temp-dir "$TMP_HEAD" --disable-usage-stats >/dev/null
export RAY_AUTH_TOKEN_PATH=${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}
echo "== second node (1 CPU, custom resource clul_worker_node)"
# a second raylet on the same host needs its own agent / metrics ports
ray start --address "127.0.0.1:$PORT" --num-cpus 1 \
  --resources '{"clul_worker_node": 1}' \
  --dashboard-agent-listen-port 52371 --dashboard-agent-grpc-port 52372 \
  --runtime-env-agent-port 52373 --metrics-export-port 52374 \
  --disable-usage-stats >/dev/null
python - <<PY
import ray
ray.init(address="127.0.0.1:$PORT", logging_level="ERROR")
alive = [n for n in ray.nodes() if n["Alive"]]
print("nodes:", [(n["NodeID"][:12], n["Resources"].get("CPU")) for n in alive])
assert len(alive) == 2, alive
PY

export RAY_ADDRESS="http://127.0.0.1:$DASH"
echo "== job 1: train ($ROOT)"
t0=$(date +%s)
# the venv is shared by both nodes here, so working_dir alone makes `clul_ray` importable
# from the uploaded tree; on real nodes add --runtime-env cluster/runtime_env.yaml
ray job submit --working-dir . --entrypoint-num-cpus 0 -- \
  clul-ray train --root "$ROOT" --config pipelines/digits.yaml --epochs 4 \
  --shared-storage --json | tee "$OUT/train.log"
echo "   train job: $(( $(date +%s) - t0 )) s"

IDS=$(python - "$ROOT" <<'PY'
import sys
from clul_ray.store import Store
ids, shard, slc = Store(sys.argv[1]).read_index()
print(",".join(str(int(ids[(shard == k) & (slc == 1)][0])) for k in (0, 2)))
PY
)
echo "== job 2: delete ids $IDS"
t0=$(date +%s)
ray job submit --working-dir . --entrypoint-num-cpus 0 -- \
  clul-ray delete --root "$ROOT" --ids "$IDS" --json | tee "$OUT/delete.log"
echo "   delete job: $(( $(date +%s) - t0 )) s"

python - "$ROOT" <<'PY'
import json, sys
from clul_ray.store import Store
st = Store(sys.argv[1]).read_json("state.json")
print("node_id per shard:", {s["shard"]: s["node_id"][:12] for s in st["shards"]})
print("distinct nodes in this version:", len({s["node_id"] for s in st["shards"]}))
print(json.dumps({s["shard"]: s["model_sha256"] for s in st["shards"]}))
PY
echo "== stopping the cluster"
