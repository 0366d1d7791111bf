"""Train a SISA ensemble, delete ids, and check the result, from the Python API.

    python examples/sisa_api.py /tmp/clul-example
"""

import sys

from clul_ray import Pipeline, make_config

root = sys.argv[1] if len(sys.argv) > 1 else "runs/example"
p = Pipeline(root)
trained = p.train(make_config(dataset="digits", shards=4, slices=4, model="mlp", epochs=10))
print(f"version {trained['version']}: accuracy {trained['ensemble_accuracy']:.4f}")

ids, shard, _ = p.store.read_index()
to_forget = [int(i) for i in ids[shard == 1][:5]]  # five rows of shard 1
deleted = p.delete(to_forget)
print(f"version {deleted['version']}: retrained {deleted['retrained']} "
      f"(shard -> first slice), accuracy {deleted['ensemble_accuracy']:.4f}")
print(p.status()["requests"])
