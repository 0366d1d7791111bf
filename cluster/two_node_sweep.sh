#!/usr/bin/env bash
# A Ray Tune sweep (`clul-ray tune`) submitted as a Ray job to a two-node cluster on this
# machine (cluster/lib.sh: a head and a second raylet, 1 CPU each, their own temp dirs).
#
#   1. the cluster: `ray start --head` + `ray start --address` (CLUL_NODES=1: the head alone)
#   2. (two nodes) `ray job submit --working-dir .`  clul-ray tune --out OUT/refused without
#      --shared-storage: must fail with a one-line error, creating nothing
#   3. `ray job submit --working-dir .`  clul-ray tune --out OUT/sweep --shared-storage: the
#      trials run on both nodes; the data and the reference models reach them through the
#      object store, put once by the job's driver
#   4. summary: nodes used (trials per node), trials completed, each trial's result under
#      OUT/sweep/ray_results, what was put into the object store and the copies on other
#      nodes, the trainable's pickled size, wall times; exit 1 unless every trial completed
#      with its results under the root (and, on two nodes, trials ran on both)
#   5. the cluster is stopped on exit (only its own processes)
#
# Usage: cluster/two_node_sweep.sh [OUT]   (default: a fresh temp folder)
#   OUT/sweep        the sweep's --out (trials.csv, sweep.json, ray_results/)
#   OUT/summary.json what step 4 found                     OUT/*.log the jobs' logs
# Knobs (environment): CLUL_BIN (default .venv/bin), CLUL_NODES (2), CLUL_HEAD_CPUS and
#   CLUL_NODE2_CPUS (1 each), CLUL_SWEEP_METHOD (finetune), CLUL_SWEEP_DATASET
#   (synthetic:400), CLUL_SWEEP_SAMPLES (8), CLUL_EPOCHS (1), CLUL_SWEEP_MODEL_ARG
#   (hidden=16), CLUL_SWEEP_REFUSAL (1; 0 skips step 2).
#
# Both "nodes" see the same disk, so the local --out is declared shared (--shared-storage);
# on real nodes give a mount every node shares, or an s3:// --out.
# Run it under `flock /tmp/clul-cluster.lock` where other clusters may start.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CLUL_BIN:-$PWD/.venv/bin}
export PATH="$BIN:$PATH"
# shellcheck source=cluster/lib.sh
. cluster/lib.sh
NODES=${CLUL_NODES:-2}
METHOD=${CLUL_SWEEP_METHOD:-finetune}
DATASET=${CLUL_SWEEP_DATASET:-synthetic:400}
SAMPLES=${CLUL_SWEEP_SAMPLES:-8}
EPOCHS=${CLUL_EPOCHS:-1}
MODEL_ARG=${CLUL_SWEEP_MODEL_ARG:-hidden=16}
REFUSAL=${CLUL_SWEEP_REFUSAL:-1}
OUT=${1:-$(mktemp -d /tmp/clul_two_node_sweep.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -e "$OUT/sweep" ]; then
  echo "$OUT already holds a sweep (sweep/); give an empty or new folder" >&2
  exit 2
fi
python -c "import aiohttp_cors" 2>/dev/null || {
  echo "needs ray[default] for the dashboard / Jobs API: pip install 'ray[default]'" >&2
  exit 2; }

echo "== 1. cluster: $NODES node(s), CPUs: head ${CLUL_HEAD_CPUS:-1}" \
  "$([ "$NODES" = 2 ] && echo "+ second ${CLUL_NODE2_CPUS:-1}")"
T_START=$SECONDS
cluster_start "$NODES"
# lineage of the sweep stays off: the test of MLflow on a cluster is local_two_node.sh's
RUNTIME_ENV='{"env_vars": {"CLUL_RAY_LINEAGE": "0"}}'
SWEEP=(clul-ray tune --method "$METHOD" --forget class:3 --dataset "$DATASET"
       --model-arg "$MODEL_ARG" --epochs "$EPOCHS" --num-samples "$SAMPLES"
       --scheduler fifo --json)

if [ "$NODES" = 2 ] && [ "$REFUSAL" = 1 ]; then
  echo "== 2. job: a sweep to a local --out without --shared-storage: must be refused"
  if job_submit refused "$OUT" "$RUNTIME_ENV" -- "${SWEEP[@]}" --out "$OUT/refused" \
      2>/dev/null; then
    echo "the sweep to a local --out without --shared-storage was not refused" >&2
    exit 1
  fi
  if ! grep -q "is a local path but the Ray cluster has 2 nodes" "$OUT/refused.log" ||
      [ -e "$OUT/refused" ]; then
    echo "a local --out without --shared-storage was not refused cleanly:" >&2
    tail -20 "$OUT/refused.log" >&2
    exit 1
  fi
  echo "   refused: $(grep -o 'error: .*' "$OUT/refused.log" | head -1 | cut -c1-100)..."
fi

echo "== 3. job: $SAMPLES trials of $METHOD on $DATASET ($EPOCHS epoch(s)) -> $OUT/sweep"
job_submit sweep "$OUT" "$RUNTIME_ENV" -- "${SWEEP[@]}" --out "$OUT/sweep" --shared-storage
SWEEP_JOB_SECONDS=$JOB_SECONDS

echo "== 4. summary ($OUT/summary.json)"
python - "$OUT" "$NODES" "$SWEEP_JOB_SECONDS" "$(( SECONDS - T_START ))" "$METHOD" <<'PY'
import json
import sys
from pathlib import Path

out, nodes, job_s, total_s, method = Path(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:]
sweep = json.loads((out / "sweep" / "sweep.json").read_text())
meta, trials = sweep["meta"], sweep["trials"]
# each trial's own results, written by Tune where the trial ran, under the shared root
results = sorted((out / "sweep" / "ray_results" / method).glob("*/result.json"))
lines = {p.parent.name: sum(1 for _ in p.open()) for p in results}
store = meta["object_store"]
summary = {
    "nodes": nodes, "cpus": meta["cpus"],
    "trials": len(trials),
    "completed": sum(t["status"] == "completed" for t in trials),
    "trials_per_node": meta["trials_per_node"],
    "distinct_nodes": meta["distinct_nodes"],
    "driver_node": store["driver_node"],
    "trial_results_under_root": len(results),
    "trial_results_nonempty": sum(n > 0 for n in lines.values()),
    "object_store": store,
    "wall_seconds": {"tune": meta["wall_seconds"][method], "job": float(job_s),
                     "script": float(total_s), "references": meta["reference_seconds"]},
}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(f"   trials {summary['completed']}/{summary['trials']} completed; per node:",
      {k[:8]: v for k, v in summary["trials_per_node"].items()})
print(f"   results under {out / 'sweep' / 'ray_results'}: {len(results)} trial folders")
print("   put once into the object store:",
      {k: (v["bytes"], len(v["nodes"])) for k, v in store["put"].items()},
      f"(bytes, nodes holding a copy); trainable pickled: {store['trainable_bytes']} B")
print(f"   wall: tune {summary['wall_seconds']['tune']:.1f} s, job {job_s} s")
ok = (summary["completed"] == summary["trials"] == summary["trial_results_nonempty"]
      and summary["distinct_nodes"] == nodes)
sys.exit(0 if ok else 1)
PY
echo "== 5. stopping the cluster"
