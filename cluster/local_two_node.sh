#!/usr/bin/env bash
# A two-node Ray cluster on this one machine, driven through Ray Jobs, checked against the
# same pipeline run on one node.
#
#   0. reference: `clul-ray train` then `clul-ray delete` on an embedded one-node Ray
#   1. `mlflow server` on localhost (SQLite backend, proxied artifacts under OUT)
#   2. `ray start --head` (1 CPU) + `ray start --address` (1 CPU, custom resource
#      {"clul_worker_node": 1}, its own temp dir): two raylets, one cluster
#   3. `ray job submit --working-dir .`  clul-ray train: first on a local root without
#      --shared-storage (must fail with a one-line error, creating nothing), then for real
#      (shards land on both nodes)
#   4. `ray job submit --working-dir .`  clul-ray delete  (a second job, same root)
#   5. summary: node ids per shard, model digests against the reference, the lineage the
#      jobs recorded in the MLflow server; exit 1 if the cluster result differs
#   6. node loss: a longer `train` job, and the second node's processes are SIGKILLed once
#      a few slice steps are done; the job must finish on the head with the models of the
#      same run on one node (CLUL_NODE_LOSS=0 skips this)
#   7. the cluster and the server are stopped on exit (only this cluster's processes:
#      cluster/lib.sh)
#
# Usage: cluster/local_two_node.sh [OUT]   (default: a fresh temp folder)
#   OUT/root         the cluster run's storage root      OUT/ref   the one-node reference
#   OUT/summary.json what step 5 found                   OUT/*.log job and server logs
# Knobs (environment): CLUL_BIN (default .venv/bin), CLUL_CONFIG (pipelines/digits.yaml),
#   CLUL_EPOCHS (4), CLUL_LONG_EPOCHS (40, step 6), CLUL_RAY_PORT / CLUL_DASH_PORT / CLUL_MLFLOW_PORT (free ports).
#
# Both "nodes" see the same disk, so the local root is declared shared (--shared-storage);
# without it clul-ray refuses a local root on a multi-node cluster. Each node has its own
# --temp-dir, as two machines would: sharing one would let one node's runtime-env agent
# delete the unpacked working_dir under the other's job driver.
#
# Needs ray[default] (the dashboard hosts the Jobs API; a dependency of this project).
# The cluster is started and stopped by cluster/lib.sh: its own temp dirs and free ports,
# stopped by killing only its own processes, so other Ray instances on the machine are left
# alone (run it under `flock /tmp/clul-cluster.lock` where other clusters may start).
#
# Auth: Ray 2.60 turns token auth on by itself only for a head it starts locally, so every
# process here runs with RAY_AUTH_MODE=token (cluster/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CLUL_BIN:-$PWD/.venv/bin}
export PATH="$BIN:$PATH"
# shellcheck source=cluster/lib.sh
. cluster/lib.sh
export MLFLOW_DISABLE_TELEMETRY=true
CONFIG=${CLUL_CONFIG:-pipelines/digits.yaml}
EPOCHS=${CLUL_EPOCHS:-4}
NODE_LOSS=${CLUL_NODE_LOSS:-1}            # 0 skips step 6
LONG_EPOCHS=${CLUL_LONG_EPOCHS:-40}       # step 6 trains longer, so a node can die mid-way
OUT=${1:-$(mktemp -d /tmp/clul_two_node.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ROOT=$OUT/root
REF=$OUT/ref
if [ -e "$ROOT" ] || [ -e "$REF" ]; then
  echo "$OUT already holds a run (root/ or ref/); give an empty or new folder" >&2
  exit 2
fi

python -c "import aiohttp_cors" 2>/dev/null || {
  echo "needs ray[default] for the dashboard / Jobs API: pip install 'ray[default]'" >&2
  exit 2; }
MLP=${CLUL_MLFLOW_PORT:-$(free_port)}
MLFLOW_URI=http://127.0.0.1:$MLP

MLFLOW_PID=
stop_mlflow() { [ -z "$MLFLOW_PID" ] || kill "$MLFLOW_PID" 2>/dev/null || true; }
CLUSTER_EXIT_HOOKS+=(stop_mlflow)
trap cluster_cleanup EXIT

# first id of slice 1 in shards 0 and 2: both retrain from slice 1, shards 1 and 3 are kept
pick_ids() {
  python - "$1" <<'PY'
import sys
from clul_ray.storage.store import Store
ids, shard, slc = Store(sys.argv[1]).read_index()
print(",".join(str(int(ids[(shard == k) & (slc == 1)][0])) for k in (0, 2)))
PY
}

echo "== 0. reference on one node (embedded Ray): $REF"
CLUL_RAY_LINEAGE=0 clul-ray train --root "$REF" --config "$CONFIG" --epochs "$EPOCHS" \
  --json > "$OUT/ref_train.json"
IDS=$(pick_ids "$REF")
echo "$IDS" > "$OUT/ids.txt"
CLUL_RAY_LINEAGE=0 clul-ray delete --root "$REF" --ids "$IDS" --json > "$OUT/ref_delete.json"
echo "   deleted ids $IDS"
if [ "$NODE_LOSS" = 1 ]; then
  CLUL_RAY_LINEAGE=0 clul-ray train --root "$OUT/ref_long" --config "$CONFIG" \
    --epochs "$LONG_EPOCHS" --json > "$OUT/ref_long.json"
  echo "   and a $LONG_EPOCHS-epoch training for step 6"
fi

echo "== 1. mlflow server on $MLFLOW_URI"
mlflow server --host 127.0.0.1 --port "$MLP" --workers 1 \
  --backend-store-uri "sqlite:///$OUT/mlflow-server.db" \
  --artifacts-destination "$OUT/mlflow-artifacts" > "$OUT/mlflow-server.log" 2>&1 &
MLFLOW_PID=$!
for _ in $(seq 120); do
  python -c "import urllib.request; urllib.request.urlopen('$MLFLOW_URI/health', timeout=1)" \
    2>/dev/null && break
  kill -0 "$MLFLOW_PID" 2>/dev/null || { tail -5 "$OUT/mlflow-server.log" >&2; exit 1; }
  sleep 0.5
done

echo "== 2. head node (1 CPU) and a second node (1 CPU), each with its own temp dir"
cluster_start 2
echo "   head on port $PORT, dashboard $DASH"
# the venv is shared by both nodes here, so working_dir alone makes `clul_ray` importable
# from the uploaded tree; on real nodes use --runtime-env cluster/runtime_env.yaml
RUNTIME_ENV="{\"env_vars\": {\"MLFLOW_TRACKING_URI\": \"$MLFLOW_URI\"}}"
submit() {  # submit NAME -- ARGS...: one Ray job, waited for; fails unless it SUCCEEDED
  local name=$1; shift 2
  job_submit "$name" "$OUT" "$RUNTIME_ENV" -- "$@" || exit 1
}

echo "== 3a. job: train on a local root without --shared-storage: must be refused"
REFUSED=$OUT/refused_root
id="clul-refused-$(date +%s)-$$"
ray job submit --submission-id "$id" --working-dir . --runtime-env-json "$RUNTIME_ENV" \
  --entrypoint-num-cpus 0 -- clul-ray train --root "$REFUSED" --config "$CONFIG" \
  --epochs "$EPOCHS" > "$OUT/refused.log" 2>&1 || true
status=$(ray job status "$id" 2>&1 || true)
if [[ $status != *"Job '$id' failed"* ]] || ! grep -q "is a local path but the Ray cluster has 2 nodes" \
    "$OUT/refused.log" || [ -e "$REFUSED" ]; then
  echo "a local root without --shared-storage was not refused cleanly:" >&2
  tail -20 "$OUT/refused.log" >&2
  exit 1
fi
echo "   refused: $(grep -o 'error: .*' "$OUT/refused.log" | head -1 | cut -c1-100)..."
echo "   (and $REFUSED was not created)"

echo "== 3b. job: train ($ROOT)"
submit train -- clul-ray train --root "$ROOT" --config "$CONFIG" --epochs "$EPOCHS" \
  --shared-storage --json
echo "== 4. job: delete ids $IDS"
submit delete -- clul-ray delete --root "$ROOT" --ids "$IDS" --json

echo "== 5. summary ($OUT/summary.json)"
MLFLOW_TRACKING_URI=$MLFLOW_URI clul-ray lineage --root "$ROOT" --json > "$OUT/lineage.json"
python - "$OUT" <<'PY'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
load = lambda name: json.loads((out / name).read_text())  # noqa: E731
train, delete = load("train.json"), load("delete.json")
ref_train, ref_delete = load("ref_train.json"), load("ref_delete.json")
lineage = load("lineage.json")
sha = lambda r: {s["shard"]: s["model_sha256"] for s in r["per_shard"]}  # noqa: E731
nodes = lambda r: {s["shard"]: s["node_id"] for s in r["per_shard"]}  # noqa: E731
step_nodes = lambda r: {n for s in r["per_shard"] for n in s["step_nodes"].values()}  # noqa: E731
summary = {
    "train_node_ids": nodes(train),
    "delete_node_ids": nodes(delete),
    "distinct_train_nodes": len(step_nodes(train)),
    "distinct_delete_nodes": len(step_nodes(delete)),
    "train_step_nodes": {s["shard"]: s["step_nodes"] for s in train["per_shard"]},
    "retrained": delete["retrained"],
    "train_equal_to_one_node": sha(train) == sha(ref_train),
    "delete_equal_to_one_node": sha(delete) == sha(ref_delete),
    "ensemble_accuracy": {"cluster": delete["ensemble_accuracy"],
                          "one_node": ref_delete["ensemble_accuracy"]},
    "mlflow": {"tracking_uri": lineage.get("tracking_uri"),
               "versions": [{k: v.get(k) for k in ("version", "operation", "run_id", "recorded",
                                                   "mlflow_tainted", "registry_version",
                                                   "registry_current")}
                            for v in lineage.get("versions", [])]},
}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
short = lambda d: {k: v[:12] for k, v in d.items()}  # noqa: E731
for k, steps in summary["train_step_nodes"].items():
    print(f"   train shard {k}: node of slice steps", [steps[r][:8] for r in sorted(steps)])
print("   distinct nodes: train", summary["distinct_train_nodes"], "| delete",
      summary["distinct_delete_nodes"], "| retrained (shard: from slice):", summary["retrained"])
print("   model digests equal to the one-node run: train",
      summary["train_equal_to_one_node"], "| after delete", summary["delete_equal_to_one_node"])
print("   MLflow versions:", [(v["version"], v["operation"], (v["run_id"] or "-")[:8])
                            for v in summary["mlflow"]["versions"]])
mlflow_ok = [(v["version"], v["recorded"], v["registry_current"])
             for v in summary["mlflow"]["versions"]] == [(1, True, False), (2, True, True)]
summary["mlflow"]["ok"] = mlflow_ok
(out / "summary.json").write_text(json.dumps(summary, indent=1))
ok = (summary["distinct_train_nodes"] == 2 and mlflow_ok and summary["train_equal_to_one_node"]
      and summary["delete_equal_to_one_node"])
sys.exit(0 if ok else 1)
PY
if [ "$NODE_LOSS" = 1 ]; then
  echo "== 6. node loss: the second node dies mid-training; the job must finish on the head"
  ROOT2=$OUT/root_node_loss
  id="clul-node-loss-$(date +%s)-$$"
  t0=$SECONDS
  ray job submit --no-wait --submission-id "$id" --working-dir . \
    --runtime-env-json "$RUNTIME_ENV" --entrypoint-num-cpus 0 -- clul-ray train \
    --root "$ROOT2" --config "$CONFIG" --epochs "$LONG_EPOCHS" --shared-storage --json \
    > "$OUT/node_loss_submit.log" 2>&1
  # kill the node once a few slice steps are done (both nodes busy by then)
  for _ in $(seq 600); do
    n=$( (find "$ROOT2/checkpoints" -name '*.pt' 2>/dev/null || true) | wc -l)
    [ "$n" -ge 4 ] && break
    sleep 0.5
  done
  echo "   $n checkpoints written; killing every process of the second node (SIGKILL)"
  pkill -9 -f -- "$NODE2_TMP" || true
  status=
  for _ in $(seq 600); do
    status=$(ray job status "$id" 2>&1 || true)
    [[ $status == *"Job '$id' succeeded"* || $status == *"Job '$id' failed"* ||
       $status == *"Job '$id' was stopped"* ]] && break
    sleep 1
  done
  ray job logs "$id" > "$OUT/node_loss.log" 2>&1 || true
  grep '^{' "$OUT/node_loss.log" | tail -1 > "$OUT/node_loss.json" || true
  if [[ $status != *"Job '$id' succeeded"* ]]; then
    echo "the job did not survive the node loss: ${status##*$'\n'}" >&2
    tail -30 "$OUT/node_loss.log" >&2
    exit 1
  fi
  echo "   job $id succeeded in $(( SECONDS - t0 )) s"
  python - "$OUT" "$PORT" <<'PY'
import json
import sys
from pathlib import Path

import ray

out = Path(sys.argv[1])
ray.init(address=f"127.0.0.1:{sys.argv[2]}", logging_level="ERROR")
# the job can finish before the cluster has marked the killed node dead (its health checks
# take a while): wait for that, up to a minute
import time  # noqa: E402

for _ in range(60):
    alive = sum(1 for n in ray.nodes() if n["Alive"])
    if alive == 1:
        break
    time.sleep(1)
got = json.loads((out / "node_loss.json").read_text())
ref = json.loads((out / "ref_long.json").read_text())
sha = lambda r: {s["shard"]: s["model_sha256"] for s in r["per_shard"]}  # noqa: E731
res = {"alive_nodes_after": alive, "equal_to_one_node": sha(got) == sha(ref),
       "step_nodes": {s["shard"]: s["step_nodes"] for s in got["per_shard"]}}
summary = json.loads((out / "summary.json").read_text())
summary["node_loss"] = res
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(f"   alive nodes now: {alive}; models equal to the one-node run: "
      f"{res['equal_to_one_node']}")
sys.exit(0 if res["equal_to_one_node"] and alive == 1 else 1)
PY
fi
echo "== 7. stopping the cluster and the MLflow server"
