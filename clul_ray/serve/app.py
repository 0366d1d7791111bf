"""The deletion service over HTTP: a Ray Serve application around :class:`DeletionService`.

Routes::

    POST /predict         {"rows": [[v, ...], ...]}: the dataset's raw rows, as the
                          registered MLflow model takes them (digits 0..16, images as uint8
                          pixels) -> classes, probabilities, the version and the shards that
                          voted (dynamic batching across requests); 400 naming the expected
                          width
    POST /score           text roots: {"texts": [...]} -> each text's tokens, NLL per token
                          and perplexity under the mean of the voting shards' next-token
                          distributions; 400 on a classifier root (and /predict on a text one)
    POST /generate        text roots: {"prompt": "...", "max_tokens": 64} -> the greedy
                          continuation by that mean
    POST /delete          {"ids": [...]}  -> 202 once the request is in the ledger and its
                          shards are excluded; 400 naming bad or unknown ids
    GET  /requests/{id}   recorded -> excluded -> retraining -> certifying -> committed
    GET  /version         the served version, voting and excluded shards, pending requests
    GET  /healthz

With ``replicas=1`` (the default) one replica owns the root (it holds the root's lock) and
answers predictions itself. It reserves no CPU; the shard workers it starts do the
training. A replica that dies is restarted by Serve and finishes every acknowledged request
from the ledger. With ``replicas=N >= 2``, N prediction replicas and one writer
(:mod:`.replicas`), kept exact by the board (:mod:`.board`).
"""


import asyncio
import time
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from ray import serve

from ..errors import ClulError, first_line
from ..faults import NONE as NO_FAULTS
from ..faults import Faults
from . import state
from .http import answered

APP_NAME = "clul-ray"
api = FastAPI(title="clul-ray deletion service")


class PredictBody(BaseModel):
    rows: Any = None  # checked by the registered model's own input check (one line)


class DeleteBody(BaseModel):
    ids: Any = None


class ScoreBody(BaseModel):
    texts: Any = None


class GenerateBody(BaseModel):
    prompt: Any = None
    max_tokens: int = 64


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0},
                  max_ongoing_requests=256, graceful_shutdown_timeout_s=5)
@serve.ingress(api)
class DeletionApp:
    def __init__(self, root: str, url: str = "", faults: Faults = NO_FAULTS):
        from .service import DeletionService

        self.svc = DeletionService(root, url=url, faults=faults)

    def __del__(self):
        svc = getattr(self, "svc", None)
        if svc is not None:
            svc.close()

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def _predict(self, xs: list[np.ndarray]) -> list[dict | Exception]:
        sizes = [len(x) for x in xs]
        try:
            out = await asyncio.to_thread(self.svc.vote, np.concatenate(xs))
        except (ValueError, state.NoServableShard) as e:
            return [e] * len(xs)
        res, i = [], 0
        for n in sizes:
            res.append({**out, "pred": out["pred"][i:i + n],
                        "probabilities": out["probabilities"][i:i + n]})
            i += n
        return res

    @api.post("/predict")
    async def predict(self, body: PredictBody):
        try:  # raw rows -> features, as the registered MLflow model takes them
            x = self.svc.features(body.rows)
        except ClulError as e:
            raise HTTPException(400, first_line(e)) from None
        if len(x) == 0:
            raise HTTPException(400, "rows must be a non-empty list of rows")
        with answered(bad_input=(ValueError,)):
            out = await self._predict(x)
        if isinstance(out, state.NoServableShard):
            raise HTTPException(503, str(out))
        if isinstance(out, Exception):
            raise HTTPException(400, first_line(out))
        return out

    @api.post("/score")
    async def score(self, body: ScoreBody):
        return await self._text("score", body.texts)

    @api.post("/generate")
    async def generate(self, body: GenerateBody):
        return await self._text("generate", body.prompt, body.max_tokens)

    async def _text(self, work: str, *args):
        with answered():
            return await asyncio.to_thread(self.svc.text, work, *args)

    @api.post("/delete")
    async def delete(self, body: DeleteBody):
        t0 = time.time()
        try:
            ids = state.parse_json_ids(body.ids)
            out = await asyncio.to_thread(self.svc.submit, ids, t0)
        except ClulError as e:
            raise HTTPException(400, first_line(e)) from None
        return JSONResponse(out, status_code=202 if out["request_id"] else 200)

    @api.get("/requests/{request_id}")
    async def request(self, request_id: str):
        try:
            return await asyncio.to_thread(self.svc.request, request_id)
        except ClulError as e:
            raise HTTPException(404, first_line(e)) from None

    @api.get("/version")
    async def version(self):
        return self.svc.describe()

    @api.get("/healthz")
    async def healthz(self):
        d = self.svc.describe()
        return {"ok": True, "version": d["version"], "pending": len(d["pending"]),
                "errors": d["errors"]}


def application(root: str, url: str = "", replicas: int = 1, faults: Faults = NO_FAULTS):
    """The bound application: one replica that owns and serves, or a writer and
    ``replicas`` prediction replicas."""
    if int(replicas) < 1:
        raise ClulError(f"replicas must be at least 1, got {replicas}")
    if int(replicas) == 1:
        return DeletionApp.bind(root, url, faults)
    from .replicas import Reader, Writer

    writer = Writer.bind(root, url, faults, APP_NAME)
    return Reader.options(num_replicas=int(replicas)).bind(root, writer, APP_NAME)


def build(args: dict[str, Any]):
    """The application for a Serve config (``import_path: clul_ray.serve.app:build``, as a
    KubeRay RayService's ``serveConfigV2`` names it): ``args`` holds ``root``, and
    optionally ``replicas`` (default 1) and ``url`` (the address clients use, recorded in
    the root's lock)."""
    if not isinstance(args, dict) or not args.get("root"):
        raise ClulError("the serve config's args must name the root: {root: ...}")
    return application(str(args["root"]), str(args.get("url", "")),
                       int(args.get("replicas", 1)))


def start(root: str, host: str = "127.0.0.1", port: int = 8000,
          faults: Faults = NO_FAULTS, blocking: bool = False, replicas: int = 1):
    """Start Serve's HTTP proxy on ``host:port`` and the application over ``root`` (Ray
    must be initialised); returns the deployment handle."""
    url = f"http://{host}:{port}"
    app = application(root, url, replicas, faults)
    serve.start(http_options={"host": host, "port": port})
    return serve.run(app, name=APP_NAME, route_prefix="/", blocking=blocking)


def stop() -> None:
    from .board import drop_board

    serve.delete(APP_NAME)
    drop_board(APP_NAME)
