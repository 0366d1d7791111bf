"""Benchmark: exact deletion of one person from a SISA root of language models on
``tofu-synth``, placed by person and placed by document id.

One run, on fresh roots, the same corpus, model and seeds:

1. full training of the ensemble (S shards x R slices of ``gpt-tiny``) placed by person
   (``group_column: person``), then deleting one person's documents (``delete --group``),
   the wall seconds of each and the shards and slice steps the deletion retrained;
2. the same with placement by document id (the person's documents spread over shards);
3. a fresh training without the person (placed by person): its shard models must equal
   the deletion's, bit for bit, and its Min-K% PrivLeak (forget documents against the
   test documents) is compared with the deletion's;
4. the peak resident memory of this process (with ``--backend local`` it is the process
   that trained every shard, the memory a shard worker needs plus the driver's).

    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/text_sisa.py           # 200 people
    .venv/bin/python benchmarks/text_sisa.py --quick                             # 24 people

Figures go to a table on stdout and ``benchmarks/out/text_sisa-*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from clul_ray.config import make_config
from clul_ray.sisa.driver.pipeline import Pipeline
from clul_ray.text.corpus import ids_of_people, tofu_synth

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("CLUL_RAY_LINEAGE", "0")
OUT_DIR = Path(__file__).resolve().parent / "out"
console = Console(width=160)


def privleak_of(root: str, people: int, forget_ids: np.ndarray) -> float:
    """Min-K% (K = 40 %) AUC of the root's ensemble separating the forget documents from
    the test documents (the mean of the shards' next-token distributions)."""
    import torch

    from clul_ray.sisa.records.checkpoint import load_shard_model
    from clul_ray.storage import layout
    from clul_ray.text.ensemble import mean_logprobs
    from clul_ray.text.metrics import auc, min_k_prob

    p = Pipeline(root)
    cfg, store = p.config, p.store
    models = [load_shard_model(cfg, store, s).eval() for s in p.state.trained_shards()]
    test = store.read_tables(layout.TEST)
    from clul_ray.data.sources import features

    def scores(x: np.ndarray) -> np.ndarray:
        lp, mask = mean_logprobs(models, torch.from_numpy(np.array(x, np.float32)))
        return min_k_prob(lp.numpy(), mask.numpy(), 0.4)

    docs = tofu_synth(people).documents
    keep = np.isin(docs.column("id").to_numpy(), forget_ids)
    from clul_ray.text.tokenizer import byte_tokenizer, encode

    fx, _ = encode(byte_tokenizer(), docs.filter(pa.array(keep)).column("text").to_pylist(),
                   int(cfg.data.input_shape[0]))
    return auc(scores(fx.astype(np.float32)), scores(features(test)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=200)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--context", type=int, default=192)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--backend", default="ray")
    ap.add_argument("--person", type=int, default=7)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.people, a.epochs, a.d_model, a.layers = 24, 2, 32, 1
    common = dict(dataset=f"tofu-synth:{a.people}", model="gpt-tiny",
                  model_args={"d_model": a.d_model, "n_layer": a.layers, "n_head": 4},
                  input_shape=[a.context], shards=a.shards, slices=a.slices, epochs=a.epochs,
                  batch_size=16, test_fraction=0.1, backend=a.backend)
    forget = ids_of_people(tofu_synth(a.people), [a.person])
    with tempfile.TemporaryDirectory() as tmp:
        console.print("warm-up (imports, Ray's start): a one-shard training, not measured")
        Pipeline(f"{tmp}/warm").train(make_config(**{**common, "dataset": "tofu-synth:2",
                                                     "shards": 1, "slices": 1, "epochs": 1}))
        res = {}
        for tag, group in (("person", "person"), ("id", None)):
            console.print(f"[bold]{tag} placement[/bold]: train, delete person {a.person}")
            kw = {**common, "group_column": group}
            root = f"{tmp}/{tag}"
            t0 = time.perf_counter()
            trained = Pipeline(root).train(make_config(**kw))
            train_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = Pipeline(root).delete(forget.tolist())
            res[tag] = {"train_seconds": train_s, "delete_seconds": time.perf_counter() - t0,
                        "retrained": out["retrained"], "samples": trained["samples"],
                        "shas": [s["model_sha256"] for s in out["per_shard"]],
                        "perplexity": out["ensemble_perplexity"], "root": root}
        console.print("[bold]fresh training without the person[/bold] (placed by person)")
        docs = tofu_synth(a.people).documents
        keep = ~np.isin(docs.column("id").to_numpy(), forget)
        pq.write_table(docs.filter(pa.array(keep)).select(["id", "text", "person"]),
                       f"{tmp}/minus.parquet")
        ref_root = f"{tmp}/ref"
        t0 = time.perf_counter()
        ref = Pipeline(ref_root).train(make_config(**{
            **common, "group_column": "person", "dataset": f"text:{tmp}/minus.parquet"}))
        ref_s = time.perf_counter() - t0
        ref_shas = [s["model_sha256"] for s in ref["per_shard"]]
        leak_del = privleak_of(res["person"]["root"], a.people, forget)
        leak_ref = privleak_of(ref_root, a.people, forget)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    g, i = res["person"], res["id"]
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "people": a.people, "shards": a.shards, "slices": a.slices, "epochs": a.epochs,
        "context": a.context, "d_model": a.d_model, "layers": a.layers, "backend": a.backend,
        "person": a.person, "person_documents": len(forget),
        "placement": {k: {kk: v for kk, v in r.items() if kk not in ("shas", "root")}
                      for k, r in res.items()},
        "speedup_person": g["train_seconds"] / g["delete_seconds"],
        "speedup_id": i["train_seconds"] / i["delete_seconds"],
        "fresh_without_person_seconds": ref_s,
        "deletion_equals_fresh_training": g["shas"] == ref_shas,
        "auc_deleted": leak_del, "auc_fresh": leak_ref,
        "privleak_deleted_vs_fresh": (leak_del - leak_ref) / leak_ref * 100,
        "driver_peak_rss_mb": peak_mb,
    }
    t = Table("placement", "train s", "delete s", "speed-up", "shards retrained", "from slices")
    for k, r in res.items():
        t.add_row(k, f"{r['train_seconds']:.1f}", f"{r['delete_seconds']:.1f}",
                  f"{r['train_seconds'] / r['delete_seconds']:.1f}x", str(len(r["retrained"])),
                  ", ".join(f"{s}:{v}" for s, v in sorted(r["retrained"].items())))
    console.print(t)
    console.print(f"deletion == fresh training without the person: "
                  f"{summary['deletion_equals_fresh_training']}; PrivLeak of the deletion "
                  f"against the fresh training: {summary['privleak_deleted_vs_fresh']:+.2f}; "
                  f"peak RSS of this process {peak_mb:.0f} MB")
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / f"text_sisa-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(summary, indent=2))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
