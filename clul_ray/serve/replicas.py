"""The service with prediction replicas (``clul-ray serve --replicas N``, N >= 2): one
``Writer`` that owns the root and N ``Reader`` replicas, the HTTP ingress.

- **Writer** (1 replica): today's :class:`~.service.DeletionService` (the root's lock, the
  ledger, warm retrains). It publishes the serving state to the board (:mod:`.board`) at
  start, before ``submit`` returns (so before ``/delete`` answers 202), after every commit
  and every second.
- **Reader** (N replicas): ``/predict``, ``/score``, ``/generate`` answered from shard
  models it loads from the root itself; ``/delete``, ``/requests/{id}``, ``/version`` and
  ``/healthz`` forwarded to the writer through a deployment handle. For every dynamic batch
  it asks the board for the state (one call; nothing comes back when the epoch it holds is
  current), votes with the shards :func:`~.voting.allowed_voters` allows, and asks again
  after computing: if the epoch moved it computes again with the newer state's voters. An
  answer therefore never names a shard excluded before the answer's last check. A reader
  that cannot reach the board answers 503 (fail closed).
- A background thread of each reader polls the board and loads newly committed shard
  models; the reader keeps answering meanwhile with the shards it holds that are current.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from ray import serve

from ..errors import ClulError, first_line
from ..faults import NONE as NO_FAULTS
from ..faults import Faults
from . import state, voting
from .board import find_board, open_board
from .http import answered

log = logging.getLogger("clul_ray.serve")
BOARD_TIMEOUT_S = 2.0  # a board call slower than this: the reader answers 503
RECHECKS = 5  # an epoch that moves on every check this many times: 503
reader_api = FastAPI(title="clul-ray deletion service (prediction replica)")


class BoardUnreachable(Exception):
    """The reader cannot read the current serving state: it answers nothing (503)."""


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0},
                  max_ongoing_requests=256, graceful_shutdown_timeout_s=5)
class Writer:
    """The root's one writer, behind a deployment handle: (status, body) answers."""

    def __init__(self, root: str, url: str = "", faults: Faults = NO_FAULTS, app: str = ""):
        import ray

        from .service import DeletionService

        board = open_board(app)
        generation = ray.get(board.claim.remote())

        def publish(n: int, st: dict[str, Any]) -> None:
            ray.get(board.publish.remote((generation, n), st), timeout=10)

        self.svc = DeletionService(root, url=url, faults=faults, publish=publish)

    def __del__(self):
        svc = getattr(self, "svc", None)
        if svc is not None:
            svc.close()

    async def submit(self, ids: list[int], received: float) -> tuple[int, Any]:
        try:
            out = await asyncio.to_thread(self.svc.submit, ids, received)
        except ClulError as e:
            return 400, {"detail": first_line(e)}
        except Exception as e:  # noqa: BLE001 - recorded, not acknowledged: no 202
            return 503, {"detail": f"not acknowledged: {type(e).__name__}: {first_line(e)}"}
        return (202 if out["request_id"] else 200), out

    async def request(self, request_id: str) -> tuple[int, Any]:
        try:
            return 200, await asyncio.to_thread(self.svc.request, request_id)
        except ClulError as e:
            return 404, {"detail": first_line(e)}

    async def describe(self) -> dict[str, Any]:
        return self.svc.describe()


@serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0},
                  max_ongoing_requests=256, graceful_shutdown_timeout_s=5)
@serve.ingress(reader_api)
class Reader:
    def __init__(self, root: str, writer, app: str = ""):
        from ..lineage.pyfunc import input_contract
        from ..sisa.records.rootconfig import read_config
        from ..storage.store import Store

        torch.set_num_threads(1)
        self.root, self.writer, self.app_name = root, writer, app
        self.store = Store(root)
        self.cfg = read_config(self.store)
        self.contract = input_contract(self.cfg.model_dump())
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.models: dict[int, tuple[str, torch.nn.Module]] = {}  # replaced whole
        self.held: tuple[Any, Any] = (None, None)  # (token, state), replaced whole
        self._board = None
        self._stop = threading.Event()
        self._poll()  # models of the current state now, when the writer has published it
        self._thread = threading.Thread(target=self._loader, name="clul-ray-loader",
                                        daemon=True)
        self._thread.start()

    def __del__(self):
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()

    # ---- the board and the models ------------------------------------------------------
    def board(self):
        if self._board is None:
            self._board = find_board(self.app_name)
        if self._board is None:
            raise BoardUnreachable("the serving state is not published yet")
        return self._board

    def _took(self, got) -> tuple[Any, Any]:
        if got is not None:
            self.held = tuple(got)
        return self.held

    async def check(self) -> tuple[Any, Any]:
        """The board's current (token, state): one call, nothing sent back if unchanged."""
        try:
            ref = self.board().get.remote(self.held[0])
            got = await asyncio.wait_for(asyncio.wrap_future(ref.future()), BOARD_TIMEOUT_S)
        except BoardUnreachable:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to read the state: fail closed
            self._board = None
            raise BoardUnreachable(f"the serving state cannot be read: {type(e).__name__}"
                                   ) from None
        return self._took(got)

    def keys(self) -> dict[int, str]:
        return {k: sha for k, (sha, _) in self.models.items()}

    def _poll(self) -> None:
        import ray

        from ..sisa.records.checkpoint import load_shard_model
        from ..sisa.records.version import read_version

        try:
            _, st = self._took(ray.get(self.board().get.remote(self.held[0]),
                                       timeout=BOARD_TIMEOUT_S))
        except Exception as e:  # noqa: BLE001 - answered 503 by requests meanwhile
            self._board = None
            log.info("reader %s: board: %s", self.replica, first_line(e))
            return
        need = voting.to_load(st, self.root, self.keys())
        if not need:
            return
        v = read_version(self.store, int(st["version"]))
        models = dict(self.models)
        for s in v.trained_shards() if v is not None else []:
            if s.shard in need and st["models"].get(str(s.shard)) == s.model_sha256:
                models[s.shard] = (s.model_sha256,
                                   load_shard_model(self.cfg, self.store, s).eval())
        self.models = models

    def _loader(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self._poll()
            except Exception as e:  # noqa: BLE001 - retried; old models do not vote
                log.warning("reader %s: loading models: %s", self.replica, first_line(e))

    # ---- answers -----------------------------------------------------------------------
    async def answer(self, compute: Callable[[list], dict[str, Any]]) -> dict[str, Any]:
        """``compute(models)`` with the voters the board allows, checked again after: the
        answer's voters are allowed by the state current at its last check."""
        token, st = await self.check()
        for _ in range(RECHECKS):
            loaded = self.models
            keys = {k: sha for k, (sha, _) in loaded.items()}
            voters = voting.allowed_voters(st, self.root, keys)
            if not voters:
                if not voting.usable(st, self.root):
                    raise BoardUnreachable("the serving state is not published yet")
                raise state.NoServableShard(
                    f"no shard may vote (excluded {st['excluded']}, or its current model "
                    "is still loading); predictions resume when one may")
            out = await asyncio.to_thread(compute, [loaded[k][1] for k in voters])
            now, st2 = await self.check()
            if voting.same_epoch(token, now):
                return {"version": st["version"], "shards": voters,
                        "excluded": st["excluded"], "replica": self.replica,
                        "epoch": token[1], "models": {str(k): keys[k] for k in voters},
                        **out}
            token, st = now, st2
        raise BoardUnreachable("the serving state kept changing; try again")

    @torch.no_grad()
    def _probs(self, x: np.ndarray, models: list) -> dict[str, Any]:
        xt = torch.from_numpy(x)
        probs = np.stack([torch.softmax(m(xt), 1).numpy() for m in models])
        idx = list(range(len(models)))
        pred, mean = state.combine(probs, idx, idx, self.cfg.serve.aggregation)
        return {"pred": pred, "probabilities": mean}

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def _predict(self, xs: list[np.ndarray]) -> list[dict | Exception]:
        sizes = [len(x) for x in xs]
        try:
            out = await self.answer(lambda models: self._probs(np.concatenate(xs), models))
        except (state.NoServableShard, BoardUnreachable) as e:
            return [e] * len(xs)
        res, i = [], 0
        for n in sizes:
            res.append({**out, "pred": out["pred"][i:i + n].tolist(),
                        "probabilities": out["probabilities"][i:i + n].tolist()})
            i += n
        return res

    @reader_api.post("/predict")
    async def predict(self, body: dict):
        from ..lineage.pyfunc import raw_features

        if self.cfg.task == "lm":
            raise HTTPException(400, "this root serves a language model: POST /score or "
                                "/generate")
        try:
            x = raw_features(self.contract, body.get("rows"))
        except ClulError as e:
            raise HTTPException(400, first_line(e)) from None
        if len(x) == 0:
            raise HTTPException(400, "rows must be a non-empty list of rows")
        out = await self._predict(np.asarray(x, dtype=np.float32))
        if isinstance(out, Exception):
            raise HTTPException(503, str(out))
        return out

    @reader_api.post("/score")
    async def score(self, body: dict):
        return await self._text("score", body.get("texts"))

    @reader_api.post("/generate")
    async def generate(self, body: dict):
        return await self._text("generate", body.get("prompt"), body.get("max_tokens", 64))

    async def _text(self, work: str, *args):
        from ..sisa.records.rootconfig import read_tokenizer
        from ..text.ensemble import generate, score_texts

        if self.cfg.task != "lm":
            raise HTTPException(400, "this root serves a classifier: POST /predict")
        tok = read_tokenizer(self.store, self.cfg)
        context = int(self.cfg.data.input_shape[0])

        def compute(models: list) -> dict[str, Any]:
            if work == "score":
                return {"scores": score_texts(models, tok, context, *args)}
            return generate(models, tok, context, *args)
        with answered(BoardUnreachable):
            return await self.answer(compute)

    # ---- forwarded to the writer -------------------------------------------------------
    @reader_api.post("/delete")
    async def delete(self, body: dict):
        t0 = time.time()
        try:
            ids = state.parse_json_ids(body.get("ids"))
        except ClulError as e:
            raise HTTPException(400, first_line(e)) from None
        code, out = await self.writer.submit.remote(ids, t0)
        return JSONResponse(out, status_code=code)

    @reader_api.get("/requests/{request_id}")
    async def request(self, request_id: str):
        code, out = await self.writer.request.remote(request_id)
        return JSONResponse(out, status_code=code)

    @reader_api.get("/version")
    async def version(self):
        d = await self.writer.describe.remote()
        return {**d, "replica": self.replica,
                "replica_models": {str(k): v for k, v in sorted(self.keys().items())}}

    @reader_api.get("/healthz")
    async def healthz(self):
        d = await self.writer.describe.remote()
        return {"ok": True, "version": d["version"], "pending": len(d["pending"]),
                "errors": d["errors"], "replica": self.replica}
