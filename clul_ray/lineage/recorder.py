"""Mirror a root's versions into MLflow: one run per version, nested runs per retrained shard,
the registered ensemble with the alias ``current``, certificates and taint marks.

Failure policy: the store commits first and is the source of truth. :class:`LineageRecorder`
observes the pipeline's commits, after ``state.json`` is written; MLflow errors there become a
:class:`LineageWarning` and never undo or block the commit. :func:`sync` is idempotent: it
logs every version of ``versions/`` that has no complete run (a crash mid-logging leaves a run
without the ``clul_ray.recorded`` tag, which is deleted and logged again), so the next commit
or ``clul-ray lineage --sync`` fills any gap, and a resumed request never logs a version twice.
Syncs of one root run one at a time (:mod:`.background`'s lock); a ``clul-ray`` command
leaves its sync to a detached process (:mod:`.background`).
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np

from ..config import PipelineConfig
from ..hashing import sha256_ids
from ..sisa.records.ledger import Ledger, Request, Stage
from ..sisa.records.rootconfig import read_config
from ..sisa.records.version import ModelVersion, list_versions, read_current
from ..storage.layout import certificate_path, checkpoint_path, note_path
from ..storage.store import Store
from . import background as background_sync
from . import history
from .mlflow_private import dataset_entity
from .tracking import ALIAS, TAG, Tracking, enabled, flat_params, recorded, root_uri, tracking


class LineageWarning(UserWarning):
    """MLflow could not record a committed version; the store is unaffected."""


# ---- the store side: what a version was trained on, written at commit -----------------
def write_note(store: Store, config: dict, v: ModelVersion) -> dict:
    """``lineage/vNNNNNN.json``: the version's config and per-shard data digests, taken while
    its data is current (later deletions change the partitions)."""
    shards = {}
    for s in v.shards:
        ids = [store.slice_ids(s.shard, r) for r in range(len(s.keys))]
        all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        shards[str(s.shard)] = {"data_sha256": sha256_ids(all_ids), "n_ids": int(len(all_ids))}
    note = {"version": v.version, "root": root_uri(store), "config": config, "shards": shards}
    store.write_json(note_path(v.version), note)
    return note


class LineageRecorder:
    """The pipeline's observer: notes each committed version, mirrors it into MLflow, and
    each committed request's certificate. Never raises (see the failure policy).

    ``background``: start a detached sync (:mod:`.background`) instead of mirroring before
    the command returns (a ``clul-ray`` command's choice, unless ``CLUL_RAY_LINEAGE=inline``).
    A request's version is mirrored at the request's commit, which follows it, in one sync
    with its certificate (a committed request's version observed again, as the deletion
    service does once it has evaluated it, is mirrored at once)."""

    def __init__(self, background: bool = False):
        self.background = background

    def version_committed(self, store: Store, cfg: PipelineConfig, v: ModelVersion) -> None:
        try:
            write_note(store, cfg.model_dump(), v)
        except Exception as e:
            warnings.warn(f"lineage note of version {v.version} not written ({e}); "
                          "its data digests will be unknown", LineageWarning, stacklevel=2)
        if v.request_id is None or _request_done(store, v.request_id):
            mirror(store, self.background)  # else the request's commit follows: one sync


    def request_committed(self, store: Store, request: Request) -> None:
        mirror(store, self.background)  # its version and certificate


def _request_done(store: Store, request_id: str) -> bool:
    """Whether the request is committed (a version observed again, once evaluated)."""
    try:
        return Ledger(store).request(request_id).state == Stage.COMMITTED
    except Exception:  # noqa: BLE001 - no record: mirror now
        return True


def mirror(store: Store, background: bool = False) -> dict | None:
    """:func:`sync` (or, ``background``, a detached one), turning any MLflow failure into a
    warning (see the failure policy)."""
    if not enabled():
        return None
    if not store.is_local and not os.environ.get("MLFLOW_TRACKING_URI"):
        warnings.warn(f"lineage of {store.root} not recorded in MLflow: a root that is not a "
                      "local folder needs MLFLOW_TRACKING_URI (e.g. sqlite:///PATH/mlflow.db)",
                      LineageWarning, stacklevel=3)
        return None
    if background:
        try:
            if background_sync.start(store):
                return None
        except OSError:  # no process started: mirror here
            pass
    return recorded(lambda: sync(store), f"lineage of {store.root}", "the store is committed, "
                    "and the next commit or `clul-ray lineage --sync` records it", LineageWarning)


# ---- the MLflow side ------------------------------------------------------------------
def sync(store: Store) -> dict:
    """Log what the store has and MLflow lacks; mark taint; point ``current`` at the current
    version. Returns what it did. One sync of a root at a time (:func:`.background.sync_lock`),
    each with this process's client of the root (:func:`.tracking.tracking`)."""
    with background_sync.sync_lock(store):
        return run_sync(store)


def run_sync(store: Store) -> dict:
    """:func:`sync`, its lock held."""
    vs = list_versions(store)
    done = {"logged": [], "evaluated": [], "certificates": [], "tainted": [], "alias": None}
    if not vs:
        return done
    t = tracking(store)
    reqs = Ledger(store).requests()
    by_id = {r.request_id: r for r in Ledger(store).all_requests()}
    runs = t.version_runs()
    mvs = t.model_versions()
    for v in vs:
        n = v.version
        run = runs.get(n)
        if run is not None and run.data.tags.get(f"{TAG}recorded") == "true":
            if "ensemble_accuracy" not in run.data.metrics and \
                    v.metrics.ensemble_accuracy is not None:  # evaluated after its commit
                t.log_batch(run.info.run_id, metrics=_metrics(v))
                done["evaluated"].append(n)
            continue
        _discard_partial(t, run, mvs.pop(n, None))
        runs[n], mvs[n] = _log_version(t, store, v, by_id.get(v.request_id or ""))
        done["logged"].append(n)

    versions_of = history.deletion_versions(vs, reqs)
    for req in reqs:
        n = versions_of.get(req.request_id)
        cert = store.read_json(certificate_path(req.request_id))
        run = runs.get(n) if n is not None else None
        if cert is None or run is None or run.data.tags.get(f"{TAG}certificate") == \
                req.request_id:
            continue
        t.client.log_dict(run.info.run_id, cert, f"certificate/{req.request_id}.json")
        t.log_batch(run.info.run_id, tags={
            f"{TAG}certificate": req.request_id,
            f"{TAG}certificate_verified": str(cert["verification"]["ok"]).lower()})
        done["certificates"].append(req.request_id)

    tainted = history.taint(vs, reqs)
    for n, rid in sorted(tainted.items()):
        run = runs.get(n)
        if run is None or run.data.tags.get(f"{TAG}tainted") == "true":
            continue
        t.log_batch(run.info.run_id, tags={f"{TAG}tainted": "true", f"{TAG}tainted_by": rid})
        if (mv := mvs.get(n)) is not None:
            t.client.set_model_version_tag(t.model_name, mv.version, f"{TAG}tainted", "true")
            t.client.set_model_version_tag(t.model_name, mv.version, f"{TAG}tainted_by", rid)
        done["tainted"].append(n)
    shard_tainted = history.shard_taint(vs, reqs)
    for child in t.runs("shard"):
        tags = child.data.tags
        key = (int(tags[f"{TAG}version"]), int(tags[f"{TAG}shard"]))
        if key in shard_tainted and tags.get(f"{TAG}tainted") != "true":
            t.client.set_tag(child.info.run_id, f"{TAG}tainted", "true")

    state = read_current(store)
    mv = mvs.get(state.version) if state else None
    if mv is not None and str(t.aliases().get(ALIAS)) != str(mv.version):
        t.client.set_registered_model_alias(t.model_name, ALIAS, str(mv.version))
        done["alias"] = int(mv.version)
    return done


def _discard_partial(t: Tracking, run, mv) -> None:
    """Remove what an interrupted attempt at logging one version left behind."""
    if mv is not None:
        t.client.delete_model_version(t.model_name, mv.version)
    if run is None:
        return
    outputs = run.outputs.model_outputs if run.outputs else []
    for model_id in {o.model_id for o in outputs}:
        lm = t.client.get_logged_model(model_id)
        t.artifact_repo(lm.artifact_location).delete_artifacts()
        t.client.delete_logged_model(model_id)
    runs = [c for c in t.runs("shard") if c.data.tags.get("mlflow.parentRunId") ==
            run.info.run_id] + [run]
    for r in runs:  # no orphaned artifacts: they may be a tainted version's
        t.artifact_repo(r.info.artifact_uri).delete_artifacts()
        t.client.delete_run(r.info.run_id)


def _metrics(v: ModelVersion) -> dict:
    m = v.metrics
    out = {"ensemble_accuracy": m.ensemble_accuracy, "ensemble_precision": m.ensemble_precision,
           "ensemble_recall": m.ensemble_recall, "ensemble_f1": m.ensemble_f1,
           "test_samples": m.test_samples, "samples": v.samples}  # (None: not logged)
    out.update({f"shard_accuracy/{k}": a for k, a in m.shard_accuracy.items()})
    if m.ensemble_perplexity is not None:  # a text root
        out["ensemble_perplexity"] = m.ensemble_perplexity
        out.update({f"shard_perplexity/{k}": p for k, p in m.shard_perplexity.items()})
    out.update({f"seconds/{k.removesuffix('_seconds')}": s for k, s in v.timings.items()})
    out.update({f"shard_seconds/{s.shard}": s.seconds for s in v.shards
                if s.retrained_from is not None})
    return out


def checkpoint_listing(store: Store, v: ModelVersion, note: dict | None) -> dict:
    """The version's shard checkpoints as pointers into the storage root (never copies)."""
    root = root_uri(store)
    digests = (note or {}).get("shards", {})
    return {"root": root, "version": v.version, "training_digest": v.training_digest,
            "shards": [{"shard": s.shard, "n_samples": s.n_samples,
                        "model_sha256": s.model_sha256,
                        "data_sha256": digests.get(str(s.shard), {}).get("data_sha256"),
                        "retrained_from": s.retrained_from,
                        "checkpoints": [{"slice": r, "key": key, "uri":
                                         f"{root}/{checkpoint_path(s.shard, r, key)}"}
                                        for r, key in enumerate(s.keys)]}
                       for s in v.shards]}


def _log_version(t: Tracking, store: Store, v: ModelVersion, req: Request | None):
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID

    n = v.version
    note = store.read_json(note_path(n))
    current = read_current(store)
    stored_config = read_config(store).model_dump()
    if note is None and current is not None and current.version == n:  # note not written
        note = write_note(store, stored_config, v)
    config = (note or {}).get("config") or stored_config
    digests = (note or {}).get("shards", {})
    created = int(v.created * 1000)
    tags = {f"{TAG}kind": "version", f"{TAG}version": n, f"{TAG}parent_version": v.parent,
            f"{TAG}operation": v.operation, f"{TAG}request_id": v.request_id,
            f"{TAG}root": root_uri(store), f"{TAG}training_digest": v.training_digest}
    what = "added" if req is not None and req.kind == "add" else "removed"
    tags |= {f"{TAG}{what}_ids_sha256": req.ids_sha256 if req else None,
             f"{TAG}{what}_ids": req.n_ids if req else None}
    for s in v.shards:
        k = s.shard
        tags[f"{TAG}shard.{k}.data_sha256"] = digests.get(str(k), {}).get("data_sha256",
                                                                          "unknown")
        tags[f"{TAG}shard.{k}.model_sha256"] = s.model_sha256
        tags[f"{TAG}shard.{k}.checkpoint_key"] = s.keys[-1] if s.keys else ""
    run = t.client.create_run(t.experiment_id, start_time=created,
                              run_name=f"v{n:06d}-{v.operation}",
                              tags={f"{TAG}kind": "version", f"{TAG}version": str(n)})
    rid = run.info.run_id
    t.log_batch(rid, params=flat_params(config), metrics=_metrics(v), tags=tags,
                timestamp=created)
    t.client.log_dict(rid, checkpoint_listing(store, v, note), "checkpoints.json")

    for s in v.shards:
        if s.retrained_from is None:
            continue
        k = s.shard
        data = digests.get(str(k), {}).get("data_sha256", "unknown")
        child = t.client.create_run(
            t.experiment_id, start_time=created, run_name=f"v{n:06d}-shard-{k}",
            tags={MLFLOW_PARENT_RUN_ID: rid, f"{TAG}kind": "shard", f"{TAG}version": str(n),
                  f"{TAG}shard": str(k)})
        t.log_batch(child.info.run_id,
                    params={"shard": str(k), "retrained_from": str(s.retrained_from),
                            "slices_trained": str(len(s.keys) - s.retrained_from)},
                    metrics={"seconds": s.seconds, "n_samples": s.n_samples},
                    tags={f"{TAG}retrained_from": s.retrained_from,
                          f"{TAG}data_sha256": data, f"{TAG}model_sha256": s.model_sha256,
                          f"{TAG}checkpoint_key": s.keys[-1] if s.keys else "",
                          f"{TAG}node_id": s.node_id},
                    timestamp=created)
        ds = _shard_dataset(store, k, data)
        t.client.log_inputs(child.info.run_id, datasets=[DatasetInput(
            dataset_entity(ds), tags=[InputTag(MLFLOW_DATASET_CONTEXT, "training"),
                                      InputTag(f"{TAG}data_sha256", data),
                                      InputTag(f"{TAG}n_samples", str(s.n_samples))])])
        t.client.set_terminated(child.info.run_id, "FINISHED")

    model_id, artifact_location = _log_model(t, store, rid, n, config)
    t.ensure_registered_model()
    # The artifact location as the source (not models:/<id>): MLflow's SQL registry resolves
    # models:/ sources with the process-wide tracking URI, not this client's.
    mv = t.client.create_model_version(
        t.model_name, source=artifact_location, run_id=rid, model_id=model_id,
        tags={f"{TAG}version": str(n), f"{TAG}operation": v.operation,
              f"{TAG}request_id": v.request_id or "", f"{TAG}root": root_uri(store)},
        description=f"version {n} ({v.operation}) of {root_uri(store)}")
    t.log_batch(rid, tags={f"{TAG}registry_version": mv.version, f"{TAG}model_id": model_id,
                           f"{TAG}recorded": "true"})
    t.client.set_terminated(rid, "FINISHED")
    return t.client.get_run(rid), mv


def _shard_dataset(store: Store, shard: int, digest: str):
    """An MLflow dataset for the data a shard trained on: where it lives and its digest."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    uri = f"{root_uri(store)}/data/train/shard={shard}"
    try:
        with warnings.catch_warnings():  # "can be interpreted in multiple ways"
            warnings.simplefilter("ignore")
            source = resolve_dataset_source(uri)
    except Exception:
        from mlflow.data.http_dataset_source import HTTPDatasetSource

        source = HTTPDatasetSource(uri)
    return MetaDataset(source, name=f"shard={shard}", digest=digest[:32])


def _log_model(t: Tracking, store: Store, run_id: str, version: int,
               config: dict) -> tuple[str, str]:
    """Log the pointer-only pyfunc ensemble as an MLflow 3 logged model of ``run_id``, with
    its input contract (the dataset spec, raw row width and dtype) in the model config and as
    its signature: raw dataset rows in, the predicted class (int64) out. The directory comes
    from a template saved once (:mod:`.model_dir`)."""
    from mlflow.entities import LoggedModelOutput

    from .model_dir import write_model_dir
    from .pyfunc import PIP_REQUIREMENTS, input_contract, model_signature

    contract = input_contract(config)

    lm = t.client.create_logged_model(
        t.experiment_id, name="ensemble", source_run_id=run_id, model_type="sisa-ensemble",
        tags={f"{TAG}version": str(version), f"{TAG}root": root_uri(store)})
    t.client.log_outputs(run_id, [LoggedModelOutput(lm.model_id, step=0)])
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/model"
        write_model_dir(path, PIP_REQUIREMENTS,
                        {"root": root_uri(store), "version": version, "config": config,
                         "dataset": config["data"]["dataset"], "input": contract},
                        model_signature(contract) if contract else None,
                        model_id=lm.model_id, run_id=run_id,
                        artifact_path=lm.artifact_location)
        t.client.log_model_artifacts(lm.model_id, path)
    t.client.finalize_logged_model(lm.model_id, "READY")
    return lm.model_id, lm.artifact_location
