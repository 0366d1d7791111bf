"""The deletion service's core, without HTTP: one storage root, served.

- It holds the root's lock for its whole life (``serve URL`` in ``lock.json``), so no
  other writer touches the root while it runs; ``clul-ray delete --service URL`` sends
  requests to it instead.
- ``predict`` takes the dataset's raw rows, the input of the registered MLflow model, and
  applies the same preprocessing through the same code
  (:func:`~clul_ray.lineage.pyfunc.raw_features`); it answers from the shard models of the
  current version that may vote: a shard holding rows of a pending request is excluded
  (:mod:`.state`).
- ``submit`` checks the ids, records the request in the ledger and excludes its shards,
  then returns: the acknowledgement comes after both.
- One background thread drives the ledger (the same controller steps as ``clul-ray
  delete``) with warm shard workers (:mod:`..sisa.compute.warm`). Before a retrain it runs the data
  steps of every pending deletion, so requests that arrived while a shard retrained are
  all in that shard's next retrain; the later ones then commit without training, each with
  its own version and certificate. After each commit the changed shard models are loaded
  and the request's shards vote again.
- With prediction replicas (:mod:`.replicas`), ``publish`` sends the serving state to the
  board (:mod:`.board`): at start, in ``submit`` before it returns, after every commit.
- On start it warms everything in parallel (:mod:`.startup`), then finishes whatever the
  ledger holds (a service or CLI that died): a restart loses no acknowledged request.

Threads, and what each owns:

- **Request threads** (Serve's event loop, and the threads ``asyncio.to_thread`` runs
  ``predict``, ``submit`` and ``request`` on): ``submit`` records a new request in the
  ledger and adds it to the exclusion state (``_affected``, ``_excluded_at``); the others
  only read.
- **The driver thread** (``clul-ray-retrain``, :meth:`DeletionService._loop`): the only
  thread that advances ledger requests, changes the root's data, checkpoints and versions,
  loads models and evaluates. It alone replaces ``models`` and ``version`` (whole, never
  changed in place), removes committed requests from the exclusion state and appends to
  ``errors``.
- **The lineage thread** (``clul-ray-lineage``, :class:`Deferred`): observer calls in commit
  order, each once the driver is idle; it reads the root through the pipeline's store.
- The shard workers are Ray actors in other processes, each with a store of its own.

``_mutex`` guards ``_affected``, ``_excluded_at``, ``models``, ``version`` and ``errors``
(every read and write of them, on any thread), and makes recording a request exclusive
with the data steps (RemoveRows, DiscardCheckpoints): a request is planned against an
index no step is rewriting. Retrains and commits run outside it, so a prediction or an
acknowledgement never waits on training. Shared without ``_mutex``: the pipeline's
:class:`~clul_ray.storage.cache.CachingStore` (thread-safe: its own lock around its memo;
request threads write ledger records through it while the driver writes and reads), the
events, the config (read-only once started) and the Ray metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

import numpy as np
import torch

from ..errors import ClulError, first_line
from ..faults import NONE as NO_FAULTS
from ..faults import Faults
from ..lineage.pyfunc import input_contract, raw_features
from ..lineage.recorder import LineageRecorder, mirror
from ..phases import Phases
from ..runtime import ensure_ray
from ..sisa.compute.evaluation import evaluate_committed, unevaluated
from ..sisa.compute.site import on_ray
from ..sisa.compute.warm import WarmExecutor
from ..sisa.decisions.controller import Kind, Stage
from ..sisa.driver.pipeline import Pipeline
from ..sisa.records.rootconfig import read_tokenizer
from ..sisa.records.version import ModelVersion
from ..storage.cache import CachingStore
from ..text.ensemble import generate, score_texts
from . import startup, state
from .deferred import Deferred
from .metrics import Metrics

log = logging.getLogger("clul_ray.serve")


class DeletionService:
    def __init__(self, root: str, url: str = "", address: str | None = None,
                 lineage: bool = True, faults: Faults = NO_FAULTS,
                 publish: Callable[[int, dict[str, Any]], None] | None = None):
        ensure_ray(address)
        phases = Phases()
        self.publish, self._published = publish, 0  # the serving state to the board
        self.executor = WarmExecutor(root)
        self._wake, self._stop, self._idle = threading.Event(), threading.Event(), threading.Event()
        self._idle.set()  # (cleared while the driver works: lineage waits for it)
        # lineage off the commit path (its sync is idempotent); unchanged files from memory
        self.lineage = Deferred(LineageRecorder(), self._idle) if lineage else None
        # a version is evaluated after its request committed (off the request's path)
        self.pipeline = Pipeline(root, address, executor=self.executor,
                                 observers=[self.lineage] if self.lineage else [],
                                 store=CachingStore(root), site=on_ray(address),
                                 evaluate_at_commit=False, faults=faults)
        self.url = url
        command = f"serve {url}".strip()
        startup.take_over(self.pipeline.store, command, url)
        self._hold = self.pipeline.writing(command)
        self._hold.__enter__()  # the root's lock, for the service's life
        try:
            self._start(phases)
        except BaseException:
            self.executor.close()
            self._hold.__exit__(None, None, None)
            raise
        self.start_seconds = phases.report()
        self._thread = threading.Thread(target=self._loop, name="clul-ray-retrain",
                                        daemon=True)
        self._publish()  # before the driver starts: readers see every pending exclusion
        self._thread.start()
        self._wake.set()  # finish what the ledger holds

    def _start(self, phases: Phases) -> None:
        """Check the data and load the served models while every shard's worker starts and
        reads its slices (:mod:`.startup`); returns once all are done."""
        self.cfg = self.pipeline.config
        v = self.pipeline.state
        shards = list(range(self.cfg.partition.shards))
        warming = self.executor.warm_up(self.cfg, shards)  # (they start meanwhile)
        with phases.phase("check data"):
            self.pipeline.check_data(self.cfg)  # the data is whole before serving from it
        self._mutex = threading.RLock()
        self.models: dict[int, tuple[str, torch.nn.Module]] = {}
        self.version: ModelVersion | None = None
        pending = self.pipeline.ledger.pending()
        self._affected = {r.request_id: set(r.plan.affected) for r in pending}
        self._excluded_at = dict.fromkeys(self._affected, time.time())
        self.errors: list[str] = []
        self.metrics = Metrics()
        with phases.phase("load models"):
            self._load(v)
        with phases.phase("read for the first commit"):
            startup.read_for_commit(self.pipeline.store, v, self.cfg.partition.total_slices)
        synced = self.lineage.run_soon(mirror, self.pipeline.store) if self.lineage else None
        with phases.phase("wait for the warm shard workers"):
            self.warm = startup.warmed(warming)  # {shard: its worker's cache stats}
        with phases.phase("wait for the lineage sync"):
            synced is None or synced.wait(startup.LINEAGE_WAIT_S)

    # ---- models ------------------------------------------------------------------------
    def _load(self, v: ModelVersion, admitting: str | None = None) -> None:
        """Serve version ``v``: load the shard models whose digest changed. A shard of a
        pending request is not loaded (it does not vote, and its checkpoints may be gone);
        it is when the request commits."""
        store = self.pipeline.store
        with self._mutex:  # (the shards of request ``admitting`` are about to vote)
            skip = state.excluded(self.cfg.partition.shards, [
                a for r, a in self._affected.items() if r != admitting])
            loaded = self.models
        same = {s.shard: loaded[s.shard] for s in v.trained_shards()
                if s.shard in loaded and loaded[s.shard][0] == s.model_sha256}
        models = {**same, **startup.load_models(self.cfg, store, [
            s for s in v.trained_shards() if s.shard not in same and s.shard not in skip])}
        with self._mutex:
            self.models, self.version = models, v

    def voters(self) -> tuple[list[int], set[int]]:
        with self._mutex:
            shards = sorted(self.models)
            out = state.excluded(self.cfg.partition.shards, self._affected.values())
        return [k for k in shards if k not in out], out

    @cached_property
    def contract(self) -> dict:
        """What the registered MLflow model of this root takes (its input contract)."""
        return input_contract(self.cfg.model_dump())

    def features(self, rows: Any) -> np.ndarray:
        """The dataset's raw rows -> the shard models' (n, d) features, as the registered
        MLflow model takes and transforms them; a one-line ClulError for input that is not
        numeric rows of the dataset's raw width."""
        if self.cfg.task == "lm":
            raise ClulError("this root serves a language model: POST /score or /generate")
        return raw_features(self.contract, rows)

    def predict(self, rows: Any) -> dict[str, Any]:
        """The dataset's raw rows -> classes and mean probabilities over the voting shards."""
        return self.vote(self.features(rows))

    def voting(self) -> tuple[int, list[int], set[int], list]:
        """(version, voting shards, excluded shards, the voters' models), read at once;
        NoServableShard when every trained shard is excluded."""
        with self._mutex:
            voters, out = self.voters()
            version = self.version.version
            models = [self.models[k][1] for k in voters]
        if not voters:
            raise state.NoServableShard(
                f"shards {sorted(out)} all hold rows of pending deletion requests; "
                "predictions resume when the first of them commits")
        return version, voters, out, models

    @torch.no_grad()
    def vote(self, x: np.ndarray) -> dict[str, Any]:
        """Features (n, d), as :meth:`features` gives them -> classes and mean
        probabilities over the voting shards."""
        d = int(np.prod(self.cfg.data.input_shape))
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"features must be (n, {d}), got shape {list(x.shape)}")
        version, voters, out, models = self.voting()
        xt = torch.from_numpy(x)
        probs = np.stack([torch.softmax(m(xt), 1).numpy() for m in models])
        pred, mean = state.combine(probs, voters, voters, self.cfg.serve.aggregation)
        self.metrics.predicted(len(x))
        return {"version": version, "shards": voters, "excluded": sorted(out),
                "pred": pred.tolist(), "probabilities": mean.tolist()}

    @cached_property
    def tokenizer(self):
        return read_tokenizer(self.pipeline.store, self.cfg)

    def text(self, work: str, *args) -> dict[str, Any]:
        """A text root's ``score`` (texts -> per-token NLL and perplexity) or ``generate``
        (a prompt -> its greedy continuation), by the mean of the voting shards'
        next-token distributions (:mod:`clul_ray.text.ensemble`)."""
        if self.cfg.task != "lm":
            raise ClulError("this root serves a classifier: POST /predict")
        version, voters, out, models = self.voting()
        context = int(self.cfg.data.input_shape[0])
        if work == "score":
            res: dict[str, Any] = {"scores": score_texts(models, self.tokenizer, context,
                                                         *args)}
        else:
            res = generate(models, self.tokenizer, context, *args)
        self.metrics.predicted(len(res.get("scores", [0])))
        return {"version": version, "shards": voters, "excluded": sorted(out), **res}

    # ---- requests ----------------------------------------------------------------------
    def submit(self, ids: list[int], received: float | None = None) -> dict[str, Any]:
        """Record a deletion and exclude its shards; returns once both are done."""
        t0 = received or time.time()
        with self._mutex:
            req, already = self.pipeline.record_deletion(np.asarray(ids, dtype=np.int64),
                                                         checked=True)
            if req is not None:
                self._affected[req.request_id] = set(req.plan.affected)
                self._excluded_at[req.request_id] = time.time()
            _, out = self.voters()
        if req is None:
            return {"request_id": None, "state": "already deleted",
                    "already_deleted": already}
        self._publish()  # every prediction replica sees the exclusion before the 202
        took = time.time() - t0
        self.metrics.recorded(took)
        self._wake.set()
        return {"request_id": req.request_id, "state": state.Phase.EXCLUDED.value,
                "exclusion_seconds": took,
                "affected": {str(k): r for k, r in req.plan.affected.items()},
                "excluded": sorted(out), "already_deleted": already,
                "n_ids": req.n_ids, "n_test_ids": req.n_ids - req.n_train}

    def request(self, request_id: str) -> dict[str, Any]:
        req = self.pipeline.ledger.request(request_id)  # ClulError when unknown
        phase = state.phase(req.state)
        with self._mutex:
            if phase == state.Phase.COMMITTED and request_id in self._affected:
                phase = state.Phase.CERTIFYING  # committed once its shards vote again
            excluded_at = self._excluded_at.get(request_id)
        out = {"request_id": req.request_id, "kind": req.kind.value, "state": phase.value,
               "timeline": state.timeline(req.history, excluded_at),
               "affected": {str(k): r for k, r in req.plan.affected.items()},
               "version": req.result.get("version")}
        if req.state == Stage.COMMITTED:
            out["certificate"] = f"certificates/{req.request_id}.json"
        return out

    def describe(self) -> dict[str, Any]:
        with self._mutex:
            voters, out = self.voters()
            v, models = self.version, self.models
            pending, errors = sorted(self._affected), self.errors[-5:]
        return {"root": self.pipeline.store.root, "version": v.version,
                "operation": v.operation, "shards": voters, "excluded": sorted(out),
                "pending": pending, "aggregation": self.cfg.serve.aggregation,
                "busy": not self._idle.is_set() or self._wake.is_set(),  # retrain or evaluation
                "model_sha256": {str(k): m[0] for k, m in sorted(models.items())},
                "errors": errors, "start_seconds": self.start_seconds}

    # ---- the board (prediction replicas) -----------------------------------------------
    def serving_state(self) -> tuple[int, dict[str, Any]]:
        """(sequence number, state) read at once: the version, each trained shard's
        current model digest, the excluded shards. A later number always holds every
        change an earlier one held."""
        with self._mutex:
            self._published += 1
            _, out = self.voters()
            v = self.version
            return self._published, {
                "root": self.pipeline.store.root, "version": v.version,
                "models": {str(s.shard): s.model_sha256 for s in v.trained_shards()},
                "excluded": sorted(out)}

    def _publish(self) -> None:
        if self.publish is not None:
            self.publish(*self.serving_state())

    def _heartbeat(self) -> None:
        """Publish again (a board restarted empty gets the state back; an unchanged state
        does not move the board's epoch)."""
        try:
            self._publish()
        except Exception as e:  # readers fail closed meanwhile
            log.warning("board: %s", first_line(e))

    # ---- the background driver ---------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            if self._stop.is_set():
                return
            self._heartbeat()
            self._wake.clear()
            self._idle.clear()
            try:
                self._drain()
            except Exception as e:  # logged, retried: the ledger keeps the request
                msg = f"{type(e).__name__}: {first_line(e)}"
                with self._mutex:
                    self.errors.append(msg)
                log.error("deletion service: %s (retrying)", msg)
                self._stop.wait(2.0)
                self._wake.set()
            finally:
                self._idle.set()

    def _test_window(self) -> None:
        """A test's wait (``Faults.retrain_delay_s``): before data steps, then retraining."""
        if self.pipeline.faults.retrain_delay_s:
            self._stop.wait(self.pipeline.faults.retrain_delay_s)

    def _drain(self) -> None:
        while not self._stop.is_set():
            self._test_window()
            pending = self.pipeline.ledger.pending()
            if not pending:
                self._evaluate()  # (a version a previous service committed, too)
                return
            with self._mutex:  # data steps of every pending deletion first (coalescing)
                for req in pending:
                    while req.kind == Kind.DELETE and req.state in (Stage.PLANNED,
                                                                    Stage.DATA_REMOVED):
                        self.pipeline.step(req)
            self._test_window()
            for req in pending:
                while (then := self.pipeline.step(req)) is not None:
                    if then == Stage.VERSION_COMMITTED:  # the new version: load its models now
                        self._load(self.pipeline.state)
                        self._heartbeat()  # (a stale board only excludes more: safe)
                    if self._stop.is_set():
                        return
                self._committed(req.request_id)
                self._evaluate()

    def _committed(self, request_id: str) -> None:
        """Load the request's shards from the current version, then let them vote."""
        self._load(self.pipeline.state, admitting=request_id)
        with self._mutex:
            self._affected.pop(request_id, None)
            t = self._excluded_at.pop(request_id, None)
        self._heartbeat()
        if t is not None:
            self.metrics.committed(time.time() - t)

    def _evaluate(self) -> None:
        """Metrics of the current version when it was committed without (then lineage
        again: the recorder logs what MLflow lacks)."""
        v = self.pipeline.state
        if not unevaluated(v):
            return
        evaluate_committed(self.cfg, self.pipeline.store, v, self.pipeline.site,
                           self.pipeline.progress)
        if self.lineage is not None:
            self.lineage.version_committed(self.pipeline.store, self.cfg, v)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)
        self.executor.close()
        if self.lineage is not None:
            self.lineage.close()
        self._hold.__exit__(None, None, None)
