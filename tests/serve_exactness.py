"""Helpers of the replica tests: predictions sent without pause from a few threads while
deletions stream in, and the count of answers that used a model which saw deleted rows."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sklearn.datasets import load_digits

from clul_ray.errors import ClulError
from clul_ray.serve.client import call
from clul_ray.sisa.records.version import list_versions
from clul_ray.storage.store import Store

RAW = load_digits().data[:4].tolist()


@dataclass
class Predictions:
    """``threads`` clients posting /predict until stopped: (sent, received, code, body)."""

    url: str
    threads: int = 4
    seen: list[tuple[float, float, int, dict]] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(self.threads)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.time()
            try:
                code, out = call(f"{self.url}/predict", "POST", {"rows": RAW}, timeout=30)
            except ClulError:
                code, out = 0, {}  # no answer at all (the proxy down)
            self.seen.append((t0, time.time(), code, out))
            if code == 0:
                time.sleep(0.05)

    def stop(self) -> list[tuple[float, float, int, dict]]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
        return list(self.seen)


def saw_deleted_rows(root: str, acked: list[dict]) -> dict[str, set[str]]:
    """Per acknowledged request (``request_id``, ``affected``, ``version`` it committed as):
    the digests of its affected shards' models that were trained on its rows — every model
    of the shard in a version before the request's, except the one its own version serves
    (a model an earlier coalesced retrain trained without the rows)."""
    versions = {v.version: {s.shard: s.model_sha256 for s in v.trained_shards()}
                for v in list_versions(Store(root))}
    out = {}
    for a in acked:
        mine = versions[a["version"]]
        out[a["request_id"]] = {versions[n][int(k)] for n in versions if n < a["version"]
                                for k in a["affected"] if int(k) in versions[n]} - \
            {mine[int(k)] for k in a["affected"] if int(k) in mine}
    return out


def violations(answers, acked: list[dict], bad: dict[str, set[str]]) -> list:
    """Answers to predictions *sent after* a request's 202 arrived that name a model that
    saw its rows (must be none)."""
    out = []
    for sent, _, code, body in answers:
        if code != 200:
            continue
        used = set(body["models"].values())
        for a in acked:
            if sent > a["acked_at"] and used & bad[a["request_id"]]:
                out.append((a["request_id"], body))
    return out


def poll_committed(url: str, rid: str, timeout: float = 240.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        try:
            code, st = call(f"{url}/requests/{rid}", timeout=10)
        except ClulError:
            code, st = 0, {}
        if code == 200 and st["state"] == "committed":
            return st
        time.sleep(0.2)
    raise AssertionError(f"request {rid} never committed")
