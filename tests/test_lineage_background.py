"""The MLflow mirror off the command's path: a detached sync per commit, completed by
`clul-ray lineage --sync`; syncs serialized by a lock; the model directory from a template
and one MLflow client per process."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import warnings

import pytest
from test_lineage import cli, cli_json, train_ids

from clul_ray.api import open_pipeline
from clul_ray.lineage import recorder, sync, tracking
from clul_ray.lineage.background import lock_path
from clul_ray.lineage.tracking import TAG, Tracking
from clul_ray.sisa.records.ledger import Ledger
from clul_ray.storage.store import Store


def wait_for_syncs(store: Store) -> None:
    """Until no detached sync of ``store`` is queued or running."""
    for name in ("queued.lock", "sync.lock", "queued.lock"):
        fd = os.open(lock_path(store, name), os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)


def check_complete(root) -> None:
    """Every version: one run (recorded), one registry version; every certificate logged;
    `current` on the current version."""
    store = Store(str(root))
    t = Tracking(store)
    runs, mvs = t.version_runs(), t.model_versions()
    assert sorted(runs) == [1, 2, 3] and len(t.runs("version")) == 3, "one run per version"
    assert sorted(mvs) == [1, 2, 3]
    assert all(runs[n].data.tags[f"{TAG}recorded"] == "true" for n in runs)
    rids = [r.request_id for r in Ledger(store).requests()]
    assert [runs[n].data.tags.get(f"{TAG}certificate") for n in (2, 3)] == rids
    assert t.client.get_model_version_by_alias(t.model_name, "current").version == \
        mvs[3].version


def test_a_command_leaves_mlflow_to_a_detached_sync_and_lineage_sync_completes_it(
        trained_root, monkeypatch):
    root, _ = trained_root
    d1, d2 = train_ids(root, [(0, 1)]), train_ids(root, [(1, 2)])
    calls = []
    real_sync = recorder.sync
    monkeypatch.setattr(recorder, "sync", lambda store: calls.append(store) or real_sync(store))
    monkeypatch.setenv("CLUL_RAY_LINEAGE", "1")  # a user's default
    with warnings.catch_warnings():
        warnings.simplefilter("error", recorder.LineageWarning)
        cli("delete", "--root", root, "--ids", d1[0])
        cli("delete", "--root", root, "--ids", d2[0])
    assert calls == [], "the commands mirrored into MLflow themselves"
    monkeypatch.undo()
    out = cli_json("lineage", "--root", root, "--sync")
    assert [v["run_id"] is not None for v in out["versions"]] == [True] * 3
    check_complete(root)
    wait_for_syncs(Store(str(root)))  # a detached sync that ran after finds nothing to log
    check_complete(root)
    log = Store(str(root)).path("lineage/sync.log")
    assert not os.path.exists(log) or open(log).read() == ""


def test_concurrent_syncs_log_each_version_once(trained_root, monkeypatch):
    """Two syncs at once: each waits, after its searches, up to 3 s for the other to have
    searched too. Unserialized, both would find every version missing and log it."""
    root, _ = trained_root
    p = open_pipeline(str(root), lineage=False)
    p.delete(train_ids(root, [(0, 0)]))
    p.delete(train_ids(root, [(2, 1)]))
    barrier, real = threading.Barrier(2), Tracking.version_runs

    def meeting(self):
        out = real(self)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=3)
        return out

    monkeypatch.setattr(Tracking, "version_runs", meeting)
    done: list = []
    threads = [threading.Thread(target=lambda: done.append(sync(Store(str(root)))))
               for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    monkeypatch.undo()
    assert sorted(n for d in done for n in d["logged"]) == [1, 2, 3]  # a copied root
    check_complete(root)


def test_versions_after_the_first_skip_save_model_and_reuse_the_client(trained_root,
                                                                         monkeypatch):
    import mlflow.pyfunc
    from mlflow import MlflowClient

    root, _ = trained_root
    sync(Store(str(root)))  # the template exists from now on
    made = []
    init = MlflowClient.__init__

    def counted(self, *a, **k):
        made.append(1)
        init(self, *a, **k)

    monkeypatch.setattr(MlflowClient, "__init__", counted)

    def no_save(*a, **k):
        raise AssertionError("save_model (and its requirement scan) ran for a version")

    monkeypatch.setattr(mlflow.pyfunc, "save_model", no_save)
    with warnings.catch_warnings():
        warnings.simplefilter("error", recorder.LineageWarning)
        open_pipeline(str(root)).delete(train_ids(root, [(0, 1)]))
        open_pipeline(str(root)).delete(train_ids(root, [(2, 2)]))
    assert made == [], "a new MLflow client per version"
    check_complete(root)
    t = tracking.tracking(Store(str(root)))
    mv = t.model_versions()[3]
    reqs = open(t.artifact_repo(mv.source).download_artifacts("requirements.txt")).read()
    assert "clul-ray" in reqs.split()  # the template's files are the version's


@pytest.mark.parametrize("mode,background", [("1", True), ("inline", False)])
def test_the_cli_mirrors_in_a_detached_process_unless_inline(mode, background, monkeypatch,
                                                              tmp_path):
    from clul_ray.cli.common import open_root

    monkeypatch.setenv("CLUL_RAY_LINEAGE", mode)
    p = open_root(str(tmp_path / "root"))
    assert [o.background for o in p.observers] == [background]


def test_lineage_without_sync_waits_for_a_running_sync(tmp_path):
    import time

    from clul_ray.lineage.background import sync_lock, wait

    store = Store(str(tmp_path / "root"))
    wait(store)  # no sync ever ran: returns at once
    with sync_lock(store):
        t = time.monotonic()
        wait(store, timeout=0.5)
        assert time.monotonic() - t >= 0.5, "did not wait for the running sync"
    t = time.monotonic()
    wait(store, timeout=5)
    assert time.monotonic() - t < 1


def test_a_request_is_mirrored_once_and_a_version_observed_again_at_once(trained_root,
                                                                          monkeypatch):
    """A delete's version and certificate in one sync (at the request's commit); its
    version observed again after the request committed (the deletion service, once it
    evaluated it) is mirrored then."""
    from clul_ray.sisa.records.rootconfig import read_config
    from clul_ray.sisa.records.version import read_current

    root, _ = trained_root
    calls = []
    monkeypatch.setattr(recorder, "mirror", lambda store, background=False: calls.append(
        read_current(store).version))
    open_pipeline(str(root)).delete(train_ids(root, [(1, 1)]))
    assert calls == [2], "one mirror per request, after its commit"
    store = Store(str(root))
    recorder.LineageRecorder().version_committed(store, read_config(store), read_current(store))
    assert calls == [2, 2]
