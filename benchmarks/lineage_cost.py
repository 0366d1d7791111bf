"""Benchmark: what the MLflow lineage observer costs per model version, by phase.

Trains a small root with lineage off, then mirrors it into MLflow the way a command's
observer does, each mirror in a fresh process (as a ``clul-ray`` command pays it): the
train's version, then a one-id delete's version. A third process deletes twice more and
mirrors each, reusing its MLflow client (a long-lived process: the deletion service, a
notebook); its last mirror is reported. Two more one-id deletes in fresh processes time the
pipeline's observers themselves, mirroring inline and starting a detached sync (a checkout
from before has only the first). Last, a one-id ``clul-ray delete`` is timed whole,
as a user runs it, with lineage off, mirrored in the command and by default, and then
``clul-ray lineage --sync``. Each mirror's phases (inclusive seconds; the searches
and the writes nest inside ``sync``) come from wrapping the functions named in ``PHASES``
that exist in the checkout, so it runs on a checkout from before a change too::

    PYTHONPATH=. .venv/bin/python benchmarks/lineage_cost.py --repeats 3 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "out"
# (label, module, attribute path): timed when present in the checkout
PHASES = [
    ("Tracking()", "clul_ray.lineage.tracking", "Tracking.__init__"),
    ("tracking (cached)", "clul_ray.lineage.tracking", "tracking"),
    ("seed database", "clul_ray.lineage.tracking", "seed_database"),
    ("experiment id", "clul_ray.lineage.tracking", "Tracking.experiment_id"),
    ("search version runs", "clul_ray.lineage.tracking", "Tracking.version_runs"),
    ("search model versions", "clul_ray.lineage.tracking", "Tracking.model_versions"),
    ("search runs (all kinds)", "clul_ray.lineage.tracking", "Tracking.runs"),
    ("_log_version", "clul_ray.lineage.recorder", "_log_version"),
    ("_log_model", "clul_ray.lineage.recorder", "_log_model"),
    ("pyfunc.save_model", "mlflow.pyfunc", "save_model"),
    ("requirement scan", "mlflow.utils.environment",
     "warn_dependency_requirement_mismatches"),
    ("model dir from template", "clul_ray.lineage.model_dir", "write_model_dir"),
    ("log_model_artifacts", "mlflow", "MlflowClient.log_model_artifacts"),
    ("create_model_version", "mlflow", "MlflowClient.create_model_version"),
    ("create_run", "mlflow", "MlflowClient.create_run"),
    ("log_batch", "clul_ray.lineage.tracking", "Tracking.log_batch"),
    ("log_inputs", "mlflow", "MlflowClient.log_inputs"),
    ("log_dict (listing, certificate)", "mlflow", "MlflowClient.log_dict"),
    ("set alias", "mlflow", "MlflowClient.set_registered_model_alias"),
]


TIMES: dict[str, float] = {}  # the current mirror's phases


def _wrap(times: dict, label: str, module: str, attr: str) -> None:
    try:
        owner = importlib.import_module(module)
    except ImportError:
        return
    *path, name = attr.split(".")
    for p in path:
        owner = getattr(owner, p, None)
    raw = owner.__dict__.get(name) if owner is not None and hasattr(owner, "__dict__") \
        else None
    if raw is None:
        return
    if isinstance(raw, functools.cached_property):
        inner = raw.func

        @functools.wraps(inner)
        def prop(self, inner=inner):
            t = time.perf_counter()
            try:
                return inner(self)
            finally:
                times[label] = times.get(label, 0.0) + time.perf_counter() - t
        new = functools.cached_property(prop)
        new.__set_name__(owner, name)
        setattr(owner, name, new)
        return

    @functools.wraps(raw)
    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return raw(*a, **k)
        finally:
            times[label] = times.get(label, 0.0) + time.perf_counter() - t
    setattr(owner, name, timed)


def _sync(root: str, fresh: bool, profile: str | None) -> dict:
    """One mirror of ``root``, its phases timed (``fresh``: the imports too)."""
    times = TIMES
    times.clear()
    t0 = time.perf_counter()
    if fresh:
        import mlflow  # noqa: F401

        times["import mlflow"] = time.perf_counter() - t0
        t = time.perf_counter()
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

        times["import SQL store"] = time.perf_counter() - t
        for label, module, attr in PHASES:
            _wrap(times, label, module, attr)
    from clul_ray.lineage import recorder
    from clul_ray.storage.store import Store

    prof = cProfile.Profile() if profile else None
    t = time.perf_counter()
    if prof:
        prof.enable()
    done = recorder.sync(Store(root))
    if prof:
        prof.disable()
        prof.dump_stats(profile)
    times["sync"] = time.perf_counter() - t
    times["all (imports + sync)"] = time.perf_counter() - t0
    return {"phases": {k: round(v, 4) for k, v in times.items()}, "done": done}


def _delete_one(root: str, i: int) -> None:
    from clul_ray.sisa.driver.pipeline import Pipeline  # no observers: no lineage

    p = Pipeline(root)
    ids, _, _ = p.store.read_index()
    p.delete([int(ids[i])])


def child(a) -> dict:
    if a.phase == "train":
        from clul_ray.config import make_config
        from clul_ray.sisa.driver.pipeline import Pipeline

        Pipeline(a.root).train(make_config(
            dataset=a.dataset, shards=a.shards, slices=a.slices, epochs=1, model="mlp"))
        return {}
    if a.phase == "sync":
        return _sync(a.root, True, a.profile)
    if a.phase == "delete":
        _delete_one(a.root, a.index)
        return {}
    if a.phase in ("inline", "background"):  # a one-id delete, its observers timed
        from clul_ray import api

        times = TIMES
        for event in ("version_committed", "request_committed"):
            _wrap(times, f"observer: {event}", "clul_ray.lineage.recorder",
                  f"LineageRecorder.{event}")
        kw = {"lineage_background": a.phase == "background"} \
            if "lineage_background" in inspect.signature(api.open_pipeline).parameters else {}
        t = time.perf_counter()
        p = api.open_pipeline(a.root, **kw)
        ids, _, _ = p.store.read_index()
        p.delete([int(ids[a.index])])
        times["delete, whole"] = time.perf_counter() - t
        return {"phases": {k: round(v, 4) for k, v in times.items()}}
    # warm: one process, its client reused; the first mirror pays the imports
    _sync(a.root, True, None)
    out = {}
    for i in range(2):
        _delete_one(a.root, a.index + i)
        out = _sync(a.root, False, a.profile)
    return out


def run_child(a, phase: str, env: dict, **extra) -> dict:
    args = [sys.executable, __file__, "--child", phase, "--root", a.root, "--dataset",
            a.dataset, "--shards", str(a.shards), "--slices", str(a.slices)]
    for k, v in extra.items():
        args += [f"--{k}", str(v)]
    res = subprocess.run(args, env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{phase} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def wait_for_syncs(root: str) -> None:
    """Until no detached sync of ``root`` is queued or running (none before the change)."""
    import fcntl

    folder = os.path.join(root, "lineage")
    for name in ("queued.lock", "sync.lock", "queued.lock"):
        if not os.path.exists(os.path.join(folder, name)):
            continue
        fd = os.open(os.path.join(folder, name), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)


def one_round(a, prof) -> tuple[dict, dict, bool]:
    """A fresh root: its mirrors' phases, the delete commands' wall times, and whether
    ``lineage --sync`` left every version in MLflow."""
    a.root = tempfile.mkdtemp(prefix="lineage-cost-") + "/root"
    env = dict(os.environ, CLUL_RAY_LINEAGE="0", RAY_USAGE_STATS_ENABLED="0")
    on = dict(env, CLUL_RAY_LINEAGE="1")
    run_child(a, "train", env)
    rows = {"train version, fresh process": run_child(a, "sync", on, **prof("train"))}
    run_child(a, "delete", env, index=0)
    rows["one-id delete version, fresh process"] = run_child(a, "sync", on, **prof("delete"))
    rows["one-id delete version, client reused"] = run_child(a, "warm", on, index=1,
                                                           **prof("warm"))
    for i, mode in enumerate(("inline", "background")):
        rows[f"delete observers, {mode}"] = run_child(a, mode, on, index=3 + i)
        wait_for_syncs(a.root)
    from clul_ray.storage.store import Store

    ids, _, _ = Store(a.root).read_index()
    command = {}
    for i, mode in enumerate(("0", "inline", "1")):  # off, in the command, the default
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "clul_ray.cli", "delete", "--root", a.root,
                              "--ids", str(int(ids[5 + i])), "--json"],
                             env=dict(on, CLUL_RAY_LINEAGE=mode), capture_output=True, text=True)
        command[f"CLUL_RAY_LINEAGE={mode}"] = round(time.perf_counter() - t, 3)
        if res.returncode:
            sys.exit(f"clul-ray delete failed:\n{res.stderr[-3000:]}")
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "clul_ray.cli", "lineage", "--root", a.root,
                          "--sync", "--json"], env=on, capture_output=True, text=True)
    command["lineage --sync after"] = round(time.perf_counter() - t, 3)
    tree = json.loads(res.stdout.strip().splitlines()[-1])
    return rows, command, all(v["run_id"] and v["registry_version"] for v in tree["versions"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="synthetic:20000")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--slices", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="cProfile each mirror into out/")
    ap.add_argument("--label", default="", help="a name for this checkout in the JSON")
    ap.add_argument("--repeats", type=int, default=1, help="fresh roots; medians printed")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--profile-to", dest="profile_to", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        a.phase, a.profile = a.child, a.profile_to
        print(json.dumps(child(a)))
        return
    OUT.mkdir(exist_ok=True)
    prof = (lambda name: {"profile-to": OUT / f"lineage_cost_{name}.prof"}) if a.profile \
        else (lambda name: {})
    rounds = [one_round(a, prof) for _ in range(a.repeats)]
    names = list(rounds[0][0])
    rows = {n: {"phases": {k: statistics.median(r[0][n]["phases"].get(k, float("nan"))
                                                for r in rounds)
                           for k in rounds[0][0][n]["phases"]}} for n in names}
    command = {k: statistics.median(r[1][k] for r in rounds) for k in rounds[0][1]}
    complete = all(r[2] for r in rounds)

    labels = list(dict.fromkeys(k for r in rows.values() for k in r["phases"]))
    head = f"phase (s), median of {a.repeats}"
    print(f"{head:34}" + "".join(f"{n.split(',')[0][:14]:>16}" for n in rows))
    print(f"{'':34}" + "".join(f"{n.split(', ')[1][:14]:>16}" for n in rows))
    for k in labels:
        print(f"{k:34}" + "".join(f"{r['phases'].get(k, float('nan')):16.3f}"
                                  for r in rows.values()))
    print("\n`clul-ray delete` of one id, whole process (s): " +
          ", ".join(f"{k} {v:.2f}" for k, v in command.items()) +
          f"; every version in MLflow after: {complete}")
    out = {"label": a.label, "dataset": a.dataset, "shards": a.shards, "slices": a.slices,
           "cpus": os.cpu_count(), "mirrors": rows, "delete_command": command,
           "complete_after_sync": complete, "rounds": rounds}
    (OUT / "lineage_cost.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
