"""Corrupt, missing and substituted files under a root: one line naming the file, exit 2,
the serving version unchanged, never a model trained on what is left (backend local: no
Ray)."""

from __future__ import annotations

import shutil

import pytest
from conftest import tiny_config
from typer.testing import CliRunner

from clul_ray.cli import app
from clul_ray.errors import ClulError
from clul_ray.faults import Faults
from clul_ray.sisa.driver.pipeline import Pipeline
from clul_ray.sisa.records.version import read_current

pytestmark = pytest.mark.pure
runner = CliRunner()


def snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def ids_of(root, shard, slc):
    ids, sh, sl = Pipeline(str(root)).store.read_index()
    return [int(i) for i in ids[(sh == shard) & (sl == slc)]]


def one_line_refusal(args, *names):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    for n in names:
        assert n in res.output, res.output
    return res.output


def test_a_lost_partition_file_is_named_never_trained_around(root):
    for f in (root / "data/train/shard=2/slice=1").glob("*.parquet"):
        f.unlink()
    lost = len(ids_of(root, 2, 1))
    with pytest.raises(ClulError, match=rf"shard=2/slice=1: {lost} rows of the index are "
                                        r"missing from its files \(lost data"):
        Pipeline(str(root)).train(tiny_config(backend="local", epochs=2))
    assert read_current(Pipeline(str(root)).store).version == 1, "nothing committed"
    before = snapshot(root)
    one_line_refusal(["delete", "--root", root, "--ids", ids_of(root, 0, 0)[0]],
                     "shard=2/slice=1", "lost data")
    assert snapshot(root) == before, "refused before anything changed: no pending request"
    res = runner.invoke(app, ["verify", "--root", str(root)])
    assert res.exit_code == 1 and "shard=2/slice=1" in res.output


def test_a_substituted_checkpoint_is_never_trained_on_or_committed(root):
    ck = root / "checkpoints/shard=0/slice=0"
    (target,) = list(ck.glob("*.pt"))
    (other,) = list((root / "checkpoints/shard=1/slice=0").glob("*.pt"))
    shutil.copy(other, target)  # a valid checkpoint, of another shard
    victim = ids_of(root, 0, 1)[0]  # retrains shard 0 from slice 1, reading slice 0's
    with pytest.raises(ClulError, match=rf"{target.name}: file digest .* differs from the "
                                        "recorded"):
        Pipeline(str(root)).delete([victim])
    assert read_current(Pipeline(str(root)).store).version == 1
    res = runner.invoke(app, ["verify", "--root", str(root)])
    assert res.exit_code == 1 and target.name in res.output


def test_a_checkpoint_recording_another_key_is_refused_even_without_a_digest(root):
    """A version written before file digests existed still has the content check."""
    store = Pipeline(str(root)).store
    raw = store.read_json("state.json")
    for s in raw["shards"]:
        s.pop("checkpoint_sha256", None)
    store.write_json("state.json", raw)
    (target,) = list((root / "checkpoints/shard=0/slice=0").glob("*.pt"))
    (other,) = list((root / "checkpoints/shard=1/slice=0").glob("*.pt"))
    shutil.copy(other, target)
    with pytest.raises(ClulError, match=r"records key .* shard 1 slice 0, expected key .* "
                                        r"shard 0 slice 0"):
        Pipeline(str(root)).delete([ids_of(root, 0, 1)[0]])


@pytest.mark.parametrize("what", ["checkpoint", "partition", "index"])
def test_truncated_files_are_named(root, what):
    pattern = {"checkpoint": "checkpoints/shard=0/slice=2/*.pt",
               "partition": "data/train/shard=0/slice=2/*.parquet",
               "index": "index/*.parquet"}[what]
    f = next(root.glob(pattern))
    f.write_bytes(f.read_bytes()[:50])
    message = {"checkpoint": "file digest", "partition": "unreadable Parquet",
               "index": "unreadable Parquet"}[what]
    one_line_refusal(["delete", "--root", root, "--ids", ids_of_safe(root)],
                     f.name, message)
    assert read_current(Pipeline(str(root)).store).version == 1


def ids_of_safe(root):
    """An id of shard 1 read from the test split's neighbour: the index may be broken."""
    return int(Pipeline(str(root)).store.test_ids()[0])


def status_problems(root) -> list[str]:
    res = runner.invoke(app, ["status", "--root", str(root), "--json"])
    assert res.exit_code == 0, res.output
    import json

    return json.loads(res.stdout.strip().splitlines()[-1])["problems"]


@pytest.mark.parametrize("name", ["state.json", "config.json"])
def test_garbage_small_files_are_named(root, name):
    """Writers refuse in one line naming the file; status still answers and names it."""
    victim = ids_of(root, 1, 0)[0]
    (root / name).write_bytes(b"\x00\xffnot json")
    one_line_refusal(["delete", "--root", root, "--ids", victim], name, "not valid JSON")
    assert any(name in p and "not valid JSON" in p for p in status_problems(root))
    (root / name).write_text('{"version": "seven"}')
    one_line_refusal(["delete", "--root", root, "--ids", victim], name, "not a valid")
    assert any(name in p and "not a valid" in p for p in status_problems(root))


def test_a_garbage_ledger_record_is_named_and_a_pending_request_reported(root):
    pipe = Pipeline(str(root), faults=Faults(crash_after="data_removed"))
    with pytest.raises(RuntimeError, match="injected crash"):
        pipe.delete([ids_of(root, 1, 0)[0]])
    problems = status_problems(root)
    assert any("stopped at stage 'data_removed'" in p for p in problems), problems
    (rec,) = list((root / "ledger").glob("*.json"))
    rec.write_text('{"state": "planned"}')
    one_line_refusal(["delete", "--root", root, "--ids", ids_of(root, 2, 0)[0]], rec.name,
                     "not a valid Request record")
    assert any(rec.name in p for p in status_problems(root))


def test_an_empty_or_garbage_lock_file_is_stale_once_old(root):
    """A full disk while taking the lock leaves an empty lock.json: it must not refuse every
    writer forever."""
    import os
    import time

    from clul_ray.storage import lock

    store = Pipeline(str(root)).store
    (root / "lock.json").write_bytes(b"")
    fresh = lock.read_lock(store)
    assert fresh["garbage"] and not lock.is_stale(fresh), "a lock being written right now"
    one_line_refusal(["delete", "--root", root, "--ids", ids_of(root, 1, 0)[0]], "in use")
    old = time.time() - 60
    os.utime(root / "lock.json", (old, old))
    (root / "lock.json").write_bytes(b"\x00garbage")
    os.utime(root / "lock.json", (old, old))
    assert lock.is_stale(lock.read_lock(store))
    out = Pipeline(str(root)).delete([ids_of(root, 1, 0)[0]])
    assert out["version"] == 2 and not (root / "lock.json").exists()


# ---- repair ---------------------------------------------------------------------------------
def test_repair_retrains_damaged_checkpoints_bit_for_bit(root, local_base):
    before = {s.shard: s.model_sha256 for s in read_current(Pipeline(str(root)).store).shards}
    bad = next(root.glob("checkpoints/shard=0/slice=1/*.pt"))
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    gone = next(root.glob("checkpoints/shard=2/slice=2/*.pt"))
    gone.unlink()  # missing
    res = runner.invoke(app, ["repair", "--root", str(root), "--json"])
    assert res.exit_code == 0, res.output
    import json

    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["version"] == 2 and any(bad.name in a for a in out["actions"])
    v = read_current(Pipeline(str(root)).store)
    assert v.operation == "repair"
    assert {s.shard: s.model_sha256 for s in v.shards} == before, "the same models again"
    assert runner.invoke(app, ["verify", "--root", str(root)]).exit_code == 0
    again = json.loads(runner.invoke(app, ["repair", "--root", str(root), "--json"])
                       .stdout.strip().splitlines()[-1])
    assert again["actions"] == ["nothing to do"] and again["version"] == 2


def test_repair_rebuilds_a_garbage_index(root):
    ids_before = sorted(Pipeline(str(root)).store.read_index()[0].tolist())
    for f in (root / "index").glob("*.parquet"):
        f.write_bytes(b"garbage")
    res = runner.invoke(app, ["repair", "--root", str(root)])
    assert res.exit_code == 0 and "rebuilt the index" in res.output, res.output
    assert sorted(Pipeline(str(root)).store.read_index()[0].tolist()) == ids_before


def test_repair_refuses_lost_rows_and_names_them(root):
    lost = ids_of(root, 1, 2)
    for f in (root / "data/train/shard=1/slice=2").glob("*.parquet"):
        f.unlink()
    msg = one_line_refusal(["repair", "--root", root], "shard=1/slice=2",
                           f"{len(lost)} rows of the index are missing", "restore the file")
    assert str(sorted(lost)[0]) in msg
    assert read_current(Pipeline(str(root)).store).version == 1


def test_repair_finishes_a_pending_request(root):
    pipe = Pipeline(str(root), faults=Faults(crash_after="checkpoints_discarded"))
    victim = ids_of(root, 2, 1)[0]
    with pytest.raises(RuntimeError, match="injected crash"):
        pipe.delete([victim])
    res = runner.invoke(app, ["repair", "--root", str(root)])
    assert res.exit_code == 0 and "finished request" in res.output, res.output
    st = Pipeline(str(root)).status()
    assert st["requests"]["pending"] == [] and st["version"] == 2 and st["problems"] == []


def test_no_deleted_id_stays_in_plain_form_after_commit(root):
    """The ledger keeps keyed digests once a request commits: "already deleted" and the
    sample history still answer, and no file under the root holds the ids in plain."""
    pipe = Pipeline(str(root))
    victims = [ids_of(root, 0, 1)[0], ids_of(root, 2, 2)[1]]
    tid = int(pipe.store.test_ids()[0])
    pipe.delete(victims + [tid])
    (rec,) = Pipeline(str(root)).ledger.requests()
    assert rec.plan.train_ids == [] and rec.plan.test_ids == []
    assert len(rec.train_digests) == 2 and len(rec.test_digests) == 1
    again = Pipeline(str(root)).delete(victims)
    assert again["already_deleted"] == sorted(victims) and again["retrained"] == {}
    from clul_ray.lineage.history import sample

    s = sample(pipe.store, victims[0])
    assert s["split"] == "train" and s["removed_by"]["request_id"] == rec.request_id
    assert sample(pipe.store, tid)["split"] == "test"
    import re

    for f in root.rglob("*.json"):  # the ledger, certificates, versions, notes
        numbers = {int(n) for n in re.findall(r"(?<![\w.])-?\d+(?![\w.])", f.read_text())}
        assert not numbers & set(victims) - {0, 1, 2}, f  # (tiny ints are counts)
    assert runner.invoke(app, ["verify", "--root", str(root)]).exit_code == 0


@pytest.mark.parametrize("fail_on", ["checkpoints/", "versions/", "state.json"])
def test_a_full_disk_mid_deletion_leaves_the_previous_version_and_resumes(root, monkeypatch,
                                                                          fail_on):
    """No space at a checkpoint write, at the version record, at the commit point: one line
    naming the file, the previous version serving, and the request finished once there is
    room again, with the models of an uninterrupted deletion."""
    import errno

    from clul_ray.storage.store import Store

    reference = root.parent / "reference"
    shutil.copytree(root, reference)
    victim = ids_of(root, 0, 1)[0]
    want = Pipeline(str(reference)).delete([victim])
    real = Store._put

    def full(self, target, data):
        if target.startswith(self.path(fail_on)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, target, data)

    monkeypatch.setattr(Store, "_put", full)
    res = runner.invoke(app, ["delete", "--root", str(root), "--ids", str(victim)])
    assert res.exit_code == 2 and "No space left on device" in res.output, res.output
    assert read_current(Pipeline(str(root)).store).version == 1
    assert not list(root.rglob("*.tmp-*")), "no half-written file left"
    monkeypatch.setattr(Store, "_put", real)
    done = Pipeline(str(root)).evaluate()
    assert done["version"] == 2
    assert [s["model_sha256"] for s in done["per_shard"]] == \
        [s["model_sha256"] for s in want["per_shard"]]
