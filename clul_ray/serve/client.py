"""A client of the deletion service (``clul-ray delete --service URL``, predictions):
standard library HTTP only, so sending a request needs neither Ray nor torch."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from ..errors import ClulError


def call(url: str, method: str = "GET", body: Any = None, timeout: float = 30.0
         ) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"detail": raw.decode(errors="replace")[:300]}
        return e.code, payload
    except (urllib.error.URLError, OSError) as e:
        raise ClulError(f"no deletion service at {url}: {getattr(e, 'reason', e)}") from None


def _refusal(what: str, code: int, out: Any) -> ClulError:
    detail = out.get("detail") if isinstance(out, dict) else out
    return ClulError(f"the service refused the {what} ({code}): {detail}")


def predict(service: str, rows: Any, timeout: float = 30.0) -> dict[str, Any]:
    """POST the dataset's *raw* rows, the input the registered MLflow model takes (digits
    as ``load_digits`` gives them, images as uint8 pixels, synthetic and Parquet rows as
    they are: the service applies the dataset's preprocessing) -> its answer: ``pred``,
    ``probabilities``, the ``version`` and the voting ``shards``. A refusal (rows of the
    wrong width, every shard excluded by pending deletions) is a one-line ClulError."""
    rows = rows.tolist() if hasattr(rows, "tolist") else rows  # (a numpy array)
    code, out = call(f"{service.rstrip('/')}/predict", "POST", {"rows": rows}, timeout)
    if code >= 400:
        raise _refusal("prediction", code, out)
    return out


def send_deletion(service: str, ids: list[int], wait: bool = False,
                  timeout: float = 3600.0) -> dict[str, Any]:
    """POST the ids; with ``wait``, poll the request until it commits."""
    base = service.rstrip("/")
    code, out = call(f"{base}/delete", "POST", {"ids": ids})
    if code >= 400:
        raise _refusal("request", code, out)
    rid = out.get("request_id")
    if wait and rid:
        end = time.time() + timeout
        while time.time() < end:
            code, st = call(f"{base}/requests/{rid}")
            if code == 200 and st.get("state") == "committed":
                return {**out, **st}
            time.sleep(0.2)
        raise ClulError(f"request {rid} not committed after {timeout:.0f} s")
    return out
