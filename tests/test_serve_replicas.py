"""`serve --replicas 2`: two prediction replicas and a writer, on the session's Ray, over HTTP
on localhost. Many concurrent predictions while deletions stream in: no answer to a
prediction sent after a request's 202 uses a model that saw its rows, both replicas answer,
no 5xx while commits load, and the final models equal a CLI deletion of the same ids bit for
bit. Then the Serve controller is killed during a stream: every acknowledged request
commits and predictions stay exact."""

from __future__ import annotations

import shutil
import time

import pytest
from serve_exactness import Predictions, poll_committed, saw_deleted_rows, violations

from clul_ray import Pipeline
from clul_ray.faults import Faults
from clul_ray.local_head import free_port
from clul_ray.serve.client import call
from clul_ray.storage.store import Store

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def replicated(trained_base, tmp_path_factory):
    from ray import serve

    from clul_ray.serve.app import start, stop

    root = tmp_path_factory.mktemp("replicated") / "root"
    shutil.copytree(trained_base[0], root)
    port = free_port()
    start(str(root), port=port, faults=Faults(retrain_delay_s=0.3), replicas=2)
    url = f"http://127.0.0.1:{port}"
    end = time.time() + 120
    while time.time() < end and call(f"{url}/predict", "POST",
                                     {"rows": [[0] * 64]})[0] != 200:
        time.sleep(0.5)
    yield root, url
    stop()
    serve.shutdown()


def picks(root, shards: tuple[int, ...], n: int, skip: int = 0) -> list[int]:
    """``n`` ids of the last slice of ``shards``, in turn (quick retrains)."""
    ids, shard, slc = Store(str(root)).read_index()
    per = {k: ids[(shard == k) & (slc == 2)][skip:].tolist() for k in shards}
    return [int(per[shards[i % len(shards)]][i // len(shards)]) for i in range(n)]


def stream(url: str, ids: list[int], gap: float, midway=None) -> list[dict]:
    acked = []
    for i, d in enumerate(ids):
        if midway is not None and i == len(ids) // 2:
            midway()
        code, ack = call(f"{url}/delete", "POST", {"ids": [d]}, timeout=120)
        assert code == 202, ack
        acked.append({**ack, "acked_at": time.time()})
        time.sleep(gap)
    for a in acked:
        a["version"] = poll_committed(url, a["request_id"])["version"]
    return acked


def settle(url: str, want: dict[str, str], timeout: float = 60.0) -> set[str]:
    """Replicas that answered with every shard at the writer's current model."""
    end, good = time.time() + timeout, set()
    while time.time() < end and len(good) < 2:
        code, out = call(f"{url}/predict", "POST", {"rows": [[0] * 64]})
        if code == 200 and out["models"] == want:
            good.add(out["replica"])
    return good


def test_replicas_stay_exact_during_a_deletion_stream(replicated, tmp_path):
    root, url = replicated
    ids = picks(root, (0, 1), 8)  # shard 2 keeps voting: no answer may be a 503
    cli = tmp_path / "cli"
    shutil.copytree(root, cli, ignore=shutil.ignore_patterns("lock.json", "*.tmp-*"))
    before = call(f"{url}/version")[1]["model_sha256"]

    preds = Predictions(url, threads=4)
    acked = stream(url, ids, gap=0.4)
    shas = call(f"{url}/version")[1]["model_sha256"]
    good = settle(url, shas)
    answers = preds.stop()

    codes = [c for _, _, c, _ in answers]
    assert len(answers) > 50 and set(codes) == {200}, {c: codes.count(c) for c in set(codes)}
    assert {b["replica"] for *_, b in answers} == good and len(good) == 2, \
        "both replicas answered, and both vote with the committed models"
    bad = saw_deleted_rows(str(root), acked)
    assert all(bad[a["request_id"]] for a in acked[:2]), "the check can see a stale model"
    assert violations(answers, acked, bad) == []
    # answers after a 202 that voted with an affected shard: a new model of it
    after = [b for s, _, _, b in answers if s > acked[0]["acked_at"] and "0" in b["models"]]
    assert after and all(b["models"]["0"] != before["0"] for b in after)
    # the final models equal a CLI deletion of the same ids, bit for bit
    ref = Pipeline(str(cli)).delete(ids)
    assert shas == {str(s["shard"]): s["model_sha256"] for s in ref["per_shard"]}
    assert call(f"{url}/version")[1]["pending"] == []


def test_controller_killed_during_a_deletion_stream(replicated):
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    root, url = replicated
    ids = picks(root, (1, 0), 6, skip=8)

    def kill():
        ray.kill(ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE),
                 no_restart=False)

    old = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)._actor_id
    preds = Predictions(url, threads=3)
    acked = stream(url, ids, gap=0.3, midway=kill)
    answers = preds.stop()
    end = time.time() + 60
    while time.time() < end:  # Ray restarts the controller (an actor with restarts)
        try:
            now = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
            ray.get(now.check_alive.remote(), timeout=5)
            break
        except Exception:  # noqa: BLE001 - still restarting
            time.sleep(1)
    assert now._actor_id == old, "the same controller actor, restarted"
    assert len(acked) == len(ids)
    bad = saw_deleted_rows(str(root), acked)
    assert violations(answers, acked, bad) == []
    assert [c for *_, c, _ in answers if c != 200] == []
    store = Store(str(root))
    import numpy as np

    assert not np.isin(ids, store.read_index()[0]).any()
    assert call(f"{url}/version")[1]["pending"] == []
