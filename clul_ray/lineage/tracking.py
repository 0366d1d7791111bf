"""The MLflow edge: where a storage root's lineage is tracked, and a client bound to it.

* Tracking URI (:func:`tracking_uri`): ``MLFLOW_TRACKING_URI`` when set, else
  ``sqlite:///<root>/mlflow.db`` for a local root. A remote root (``s3://``...) needs
  ``MLFLOW_TRACKING_URI``. Sweeps and continual runs track the same way, in their output
  folder.
* One experiment per storage root, named ``clul-ray:<root URI>``; one registered model per
  root, ``clul-ray-<root basename>-<8 hex of the root URI's SHA-256>``; the alias ``current``
  names the registry version of the root's current model version.
* Artifacts: ``<root>/mlartifacts`` unless the tracking URI is a server (``http(s)://``), which
  then decides (``--artifacts-destination`` / ``--default-artifact-root``).

Only ``MlflowClient`` objects bound to an explicit URI are used, never the fluent API's
process-wide tracking URI, so two roots in one process never mix, and a user's
``MLFLOW_TRACKING_URI`` is never changed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import warnings
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ClulError, first_line
from ..storage.store import Store

TAG = "clul_ray."
ALIAS = "current"
MAX_RESULTS = 1000

T = TypeVar("T")


def quiet() -> None:
    """Silence MLflow's telemetry, its run links on stdout (they would break ``--json``) and
    chatty loggers (database creation, migrations, registry waits)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # keeps --json clean
    for name in ("mlflow.store.db.utils", "mlflow.store.model_registry.abstract_store",
                 "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow's SQL store configures a deprecated SQLAlchemy loader; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r"The ``noload`` loader strategy")


def enabled() -> bool:
    """``CLUL_RAY_LINEAGE=0`` turns MLflow recording off (certificates are still written)."""
    return os.environ.get("CLUL_RAY_LINEAGE", "1").lower() not in ("0", "false", "off", "no")


def inline() -> bool:
    """``CLUL_RAY_LINEAGE=inline``: a command mirrors its versions into MLflow itself, before
    it returns, instead of in a detached ``lineage.background`` process."""
    return os.environ.get("CLUL_RAY_LINEAGE", "1").lower() == "inline"


def root_uri(store: Store) -> str:
    """The root as an absolute location: a local path, or the URI as given."""
    return store.base if store.is_local else store.root.rstrip("/")


def tracking_uri(where: Store | Path, given: str | None = None) -> str:
    """Where MLflow records: ``given`` (a ``--tracking-uri``), else ``MLFLOW_TRACKING_URI``,
    else ``sqlite:///<folder>/mlflow.db`` in a storage root (local only) or a command's
    output folder."""
    uri = given or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    if isinstance(where, Path):
        return f"sqlite:///{where.resolve()}/mlflow.db"
    if where.is_local:
        return f"sqlite:///{where.path('mlflow.db')}"
    raise ClulError(f"{where.root} is not a local folder: set MLFLOW_TRACKING_URI to record "
                    "its lineage in MLflow")


def recorded(record: Callable[[], T], what: str, then: str,
             category: type[Warning]) -> T | None:
    """``record()``; should it fail, None and a ``category`` warning ``<what> not recorded in
    MLflow (<the error>); <then>`` at the caller's caller: recording never fails the work
    it records."""
    try:
        return record()
    except Exception as e:
        warnings.warn(f"{what} not recorded in MLflow ({type(e).__name__}: {first_line(e)}); "
                      f"{then}", category, stacklevel=3)
        return None


def folder_run(uri: str, experiment: str, run_name: str, kind: str, out: Path):
    """A parent run, in ``experiment`` at ``uri`` (created when missing), of a command's
    output folder ``out`` (tags ``kind`` and ``out``): ``(client, experiment id, run id)``."""
    quiet()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name=run_name,
                            tags={f"{TAG}kind": kind, f"{TAG}out": str(out.resolve())})
    return client, exp_id, run.info.run_id


def seed_database(path: str) -> None:
    """A new root's MLflow database, copied from an empty one this MLflow version created
    before (kept in ``CLUL_RAY_CACHE``, default ``~/.cache/clul_ray``): creating one runs
    every schema migration (its cost: benchmarks/RESULTS.md). Any failure leaves the path
    alone, and MLflow creates the database itself."""
    import shutil
    import tempfile
    import uuid

    import mlflow

    cache = os.environ.get("CLUL_RAY_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "clul_ray")
    template = os.path.join(cache, f"mlflow-{mlflow.__version__}-empty.db")
    try:
        if not os.path.exists(template):
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            os.makedirs(cache, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                db = os.path.join(tmp, "mlflow.db")
                store = SqlAlchemyStore(f"sqlite:///{db}", os.path.join(tmp, "artifacts"))
                store.engine.dispose()
                os.replace(db, template)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        shutil.copyfile(template, tmp)
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - a cache: MLflow creates the database instead
        pass


def is_server(uri: str) -> bool:
    return uri.split("://", 1)[0] in ("http", "https", "databricks")


def experiment_name(store: Store) -> str:
    return f"clul-ray:{root_uri(store)}"


def model_name(store: Store) -> str:
    uri = root_uri(store)
    base = posixpath.basename(uri.rstrip("/")) or "root"
    base = "".join(c if c.isalnum() or c in "-_." else "-" for c in base)
    return f"clul-ray-{base}-{hashlib.sha256(uri.encode()).hexdigest()[:8]}"


def flat_params(d: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params: ``model_args.hidden`` -> "32"."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_params(v, f"{key}."))
        else:
            out[key] = str(v)
    return out


_clients: dict[tuple, Tracking] = {}


def tracking(store: Store) -> Tracking:
    """This process's :class:`Tracking` of ``store``, made once per tracking URI, root and
    SQLite database file (a database replaced on disk gets a new client): importing MLflow's
    store and opening its engine are paid once per process, not once per version."""
    uri = tracking_uri(store)
    db = uri[10:] if uri.startswith("sqlite:///") else None
    ident = None
    if db is not None and os.path.exists(db):
        st = os.stat(db)
        ident = (st.st_dev, st.st_ino)
    key = (uri, root_uri(store), ident)
    t = _clients.get(key)
    if t is None:
        t = Tracking(store)
        if db is not None and ident is None and os.path.exists(db):  # created (seeded) now
            st = os.stat(db)
            key = (uri, root_uri(store), (st.st_dev, st.st_ino))
        _clients[key] = t
    return t


class Tracking:
    """An MLflow client bound to one root's tracking URI, experiment and registered model."""

    def __init__(self, store: Store, create: bool = True):
        quiet()
        from mlflow import MlflowClient

        self.store = store
        self.uri = tracking_uri(store)
        if self.uri.startswith("sqlite:///") and not os.path.exists(self.uri[10:]):
            seed_database(self.uri[10:])
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.experiment = experiment_name(store)
        self.model_name = model_name(store)
        self._create = create

    @cached_property
    def experiment_id(self) -> str | None:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        if not self._create:
            return None
        location = None if is_server(self.uri) else f"{root_uri(self.store)}/mlartifacts"
        try:
            return self.client.create_experiment(
                self.experiment, artifact_location=location,
                tags={f"{TAG}root": root_uri(self.store), f"{TAG}model_name": self.model_name})
        except Exception:  # created concurrently
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return exp.experiment_id

    # ---- searching -------------------------------------------------------------------
    def runs(self, kind: str) -> list[Any]:
        """Active runs of this root of one kind ("version" or "shard"), all pages."""
        if self.experiment_id is None:
            return []
        out, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{TAG}kind` = '{kind}'",
                max_results=MAX_RESULTS, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def version_runs(self) -> dict[int, Any]:
        """Model version -> its run (the newest, should a failed attempt linger)."""
        runs = sorted(self.runs("version"), key=lambda r: r.info.start_time or 0)
        return {int(r.data.tags[f"{TAG}version"]): r for r in runs}

    def model_versions(self) -> dict[int, Any]:
        """Model version -> its registry version (by the ``clul_ray.version`` tag)."""
        from mlflow.exceptions import MlflowException

        out, token = {}, None
        while True:
            try:
                page = self.client.search_model_versions(
                    f"name = '{self.model_name}'", max_results=200, page_token=token)
            except MlflowException:
                return out
            for mv in page:
                v = mv.tags.get(f"{TAG}version")
                if v is not None:
                    out[int(v)] = mv
            token = page.token
            if not token:
                return out

    def aliases(self) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(self.model_name).aliases)
        except MlflowException:
            return {}

    def ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            try:
                self.client.create_registered_model(
                    self.model_name, tags={f"{TAG}root": root_uri(self.store)},
                    description=f"SISA ensemble of the clul-ray storage root "
                                f"{root_uri(self.store)}")
            except MlflowException:  # created concurrently
                self.client.get_registered_model(self.model_name)

    # ---- writing ---------------------------------------------------------------------
    def log_batch(self, run_id: str, params: dict | None = None, metrics: dict | None = None,
                  tags: dict | None = None, timestamp: int | None = None) -> None:
        """Params, metrics and tags in chunks that MLflow's batch limits accept."""
        import time

        from mlflow.entities import Metric, Param, RunTag

        ts = timestamp or int(time.time() * 1000)
        ps = [Param(k, v[:6000]) for k, v in (params or {}).items()]
        ms = [Metric(k, float(v), ts, 0) for k, v in (metrics or {}).items() if v is not None]
        ts_ = [RunTag(k, str(v)[:8000]) for k, v in (tags or {}).items() if v is not None]
        while ps or ms or ts_:
            self.client.log_batch(run_id, params=ps[:100], metrics=ms[:500], tags=ts_[:100])
            ps, ms, ts_ = ps[100:], ms[500:], ts_[100:]

    def artifact_repo(self, uri: str):
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(uri, tracking_uri=self.uri, registry_uri=self.uri)
