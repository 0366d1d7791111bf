"""The deletion service's threads, in process (no HTTP): request threads submit deletions
and read the service's state while its driver thread retrains and commits, through the one
caching store they share. Nothing fails, every request commits with its own certificate,
and the rows are gone."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

from clul_ray.serve.service import DeletionService


def test_submits_and_reads_while_the_driver_commits(trained_root):
    root, _ = trained_root
    svc = DeletionService(str(root), lineage=False)
    store = svc.pipeline.store
    for i in range(20000):  # a long memo: each write's forgetting walks it (a wide window)
        store.memo((f"elsewhere/{i}",), "n", lambda i=i: i)
    ids, shard, slc = store.read_index()
    picks = [[int(i)] for k in range(3) for i in ids[(shard == k) & (slc == 2)][:2]]
    errors: list[str] = []
    acks: list[dict] = []
    start, sent = threading.Barrier(4), threading.Event()

    def submitter(mine: list[list[int]]) -> None:
        start.wait()
        for batch in mine:
            try:
                acks.append(svc.submit(batch))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"submit: {type(e).__name__}: {e}")
            time.sleep(0.2)  # (the later ones arrive while the driver works)

    def reader() -> None:
        start.wait()
        while not sent.is_set() or svc.describe()["pending"]:
            try:
                d = svc.describe()
                for rid in d["pending"]:
                    svc.request(rid)
                svc.voters()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"read: {type(e).__name__}: {e}")
                return

    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: interleave their dict operations
    try:
        threads = [threading.Thread(target=submitter, args=(picks[t::3],)) for t in range(3)]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        for t in threads[:3]:
            t.join(timeout=300)
        sent.set()
        threads[3].join(timeout=600)
    finally:
        sys.setswitchinterval(before)
    try:
        assert not errors, errors[:3]
        assert not svc.errors, svc.errors
        assert len(acks) == len(picks) and all(a["state"] == "excluded" for a in acks)
        states = {a["request_id"]: svc.request(a["request_id"])["state"] for a in acks}
        assert set(states.values()) == {"committed"}, states
        for rid in states:
            assert (root / "certificates" / f"{rid}.json").exists()
        assert not np.isin(sum(picks, []), store.read_index()[0]).any()
        assert svc.voters() == ([0, 1, 2], set())
    finally:
        svc.close()
