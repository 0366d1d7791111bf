"""Benchmark: language-model unlearning on ``tofu-synth`` against retraining.

gpt-tiny is trained on the forget and retain people's documents (the original model) and
on the retain people's only (``retrain``); every language-model method (``ga``,
``grad_diff``, ``npo``, ``simnpo``, ``rmu``, ``kl_retain``) then unlearns the forget people
from the original model. Each model is scored with forget quality and model utility (TOFU,
Maini et al. 2024), PrivLeak, VerbMem and KnowMem (MUSE, Shi et al. 2024), perplexities and
seconds: the harness of ``clul-ray compare`` on a text dataset
(:mod:`clul_ray.unlearn.text_compare`). Writes summary.json / .md / .csv and compare.png in
``--out`` and prints the table in markdown with the machine it ran on.

    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/text_unlearning.py
    .venv/bin/python benchmarks/text_unlearning.py --quick    # small, in-process
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--people", type=int, default=200, help="people of tofu-synth:N")
    ap.add_argument("--bias", type=float, default=0.0, help="tofu-synth's bias option")
    ap.add_argument("--forget", default="people:10%", help="people:P or bias")
    ap.add_argument("--holdout", type=float, default=0.2, help="holdout people fraction")
    ap.add_argument("--methods", default="all", help="all, or a comma-separated list")
    ap.add_argument("--param", action="append", default=[],
                    help="method.key=value, repeatable (e.g. ga.steps=20)")
    ap.add_argument("--epochs", type=int, default=30, help="original / retrain epochs")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", choices=("ray", "local"), default="ray")
    ap.add_argument("--quick", action="store_true",
                    help="24 people, 4 epochs, d_model 32, one layer, in-process")
    ap.add_argument("--out", default=str(HERE / "figures" / "text_unlearning"),
                    help="folder for summary.json/.md/.csv and compare.png")
    a = ap.parse_args(argv)
    if a.quick:
        a.people, a.epochs, a.d_model, a.n_layer, a.n_head = 24, 4, 32, 1, 2
        a.backend = "local"
        if a.out == ap.get_default("out"):
            a.out = str(HERE / "figures" / "text_unlearning_quick")
    return a


def machine() -> str:
    import torch

    cpus = os.cpu_count()
    return (f"{cpus} CPU cores ({platform.processor() or platform.machine()}), "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"{'CUDA' if torch.cuda.is_available() else 'no GPU'}")


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    from clul_ray.unlearn.compare import CompareSpec, parse_param_overrides
    from clul_ray.unlearn.text_compare import run_text_compare
    from clul_ray.unlearn.text_summary import columns, markdown_table
    from clul_ray.unlearn.training import TrainRecipe

    dataset = f"tofu-synth:{a.people}" + (f":bias={a.bias:g}" if a.bias else "")
    spec = CompareSpec(
        dataset=dataset, model="gpt-tiny", forget=a.forget, methods=[a.methods],
        model_args={"d_model": a.d_model, "n_layer": a.n_layer, "n_head": a.n_head},
        seed=a.seed, test_fraction=a.holdout, backend=a.backend,
        recipe=TrainRecipe(epochs=a.epochs, lr=a.lr, batch_size=a.batch_size),
        params=parse_param_overrides(a.param))
    if a.backend == "ray":
        from clul_ray.runtime import ensure_ray

        ensure_ray()

    def progress(desc: str, done: int, total: int) -> None:
        if done == total:
            print(f"  {desc}: {done}/{total} ({time.perf_counter() - t0:.1f} s)",
                  file=sys.stderr)

    t0 = time.perf_counter()
    result = run_text_compare(spec, a.out, progress)
    meta = result["meta"]
    print(f"# {dataset}, gpt-tiny d_model={a.d_model} n_layer={a.n_layer} n_head={a.n_head}, "
          f"forget {a.forget}, {a.epochs} epochs, backend {a.backend}")
    print(f"machine: {machine()}")
    print(f"people {meta['people']}, documents {meta['documents']}, QAs {meta['qa']}")
    print(f"original training {meta['original_train_seconds']:.1f} s, retrain "
          f"{meta['retrain_seconds']:.1f} s, wall (all tasks) {meta['wall_seconds']:.1f} s, "
          f"whole run {time.perf_counter() - t0:.1f} s\n")
    print(markdown_table(result["rows"], columns(meta)))
    print("\n" + json.dumps(result["files"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
