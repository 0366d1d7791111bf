"""One Ray instance per test session; tiny data and models."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# the audit's cache of reference models: the session's own, never the user's ~/.cache
os.environ["CLUL_RAY_CACHE"] = __import__("tempfile").mkdtemp(prefix="clul-ray-test-cache-")
# commands mirror their lineage before they return (tests read it right after); the detached
# sync of a plain `clul-ray` command is tested in test_lineage_background.py
os.environ.setdefault("CLUL_RAY_LINEAGE", "inline")

from clul_ray.config import make_config  # noqa: E402
from clul_ray.data.sources import open_source  # noqa: E402

TINY = dict(shards=3, slices=3, epochs=4, batch_size=32, model_args={"hidden": 32},
            test_fraction=0.2)


@pytest.fixture(scope="session")
def s3_server():
    """A local S3 endpoint (moto, ``tests/s3server.py``) for the session, with its bucket;
    its endpoint and credentials are in ``os.environ`` (so in Ray's workers: ``ray_session``
    starts Ray after it). None where it cannot start (tests of s3:// roots then skip, or
    fail under ``CI=true``)."""
    from s3server import S3Process, env_set, make_bucket

    try:
        server = S3Process()
    except Exception as e:  # noqa: BLE001 - moto missing, no free port: reported by s3_root
        yield f"the local S3 server did not start: {type(e).__name__}: {e}"
        return
    with env_set(server.env()):
        make_bucket()
        yield server
    server.stop()


@pytest.fixture
def s3_url(s3_server):
    """``s3://BUCKET/<unique prefix>``: a fresh root on the session's S3 server."""
    import uuid

    from s3server import BUCKET

    if isinstance(s3_server, str):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {s3_server}", pytrace=False)
        pytest.skip(s3_server)
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def ray_session(s3_server):
    """One embedded Ray for the session, started by the first test that needs it (after
    the S3 server, so that its workers inherit the endpoint's variables)."""
    import ray

    from clul_ray.runtime import ensure_ray

    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _ray_unless_pure(request):
    """Every test gets the session's Ray except those marked ``pure`` (pure functions) or
    ``cluster`` (they start a cluster of their own)."""
    if not (request.node.get_closest_marker("pure") or request.node.get_closest_marker(
            "cluster")):
        request.getfixturevalue("ray_session")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module, as in the compare tasks (2 threads thrash on a busy
    2-core box); its tests name it with ``pytest.mark.usefixtures``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(**kw):
    return make_config(**{"dataset": "digits", **TINY, **kw})


def digits_parquet(path, drop=()):
    """Digits as a user's Parquet file (id, label, x list column), minus `drop` ids."""
    t = next(open_source("digits").iter_tables())
    keep = ~np.isin(t.column("id").to_numpy(), np.asarray(list(drop), dtype=np.int64))
    pq.write_table(t.filter(pa.array(keep)), path)
    return f"parquet:{path}"


@pytest.fixture(scope="session")
def trained_base(ray_session, tmp_path_factory):
    """A trained digits root (S=3, R=3), copied by tests that change it. (Session fixtures
    that train take the session's Ray first: the per-test fixture that starts it runs after
    them, and a Ray they started would lack the S3 endpoint in its workers.)"""
    from clul_ray import Pipeline

    root = tmp_path_factory.mktemp("base") / "root"
    result = Pipeline(str(root)).train(tiny_config())
    return root, result


@pytest.fixture
def trained_root(trained_base, tmp_path):
    root, result = trained_base
    dst = tmp_path / "root"
    shutil.copytree(root, dst)
    return dst, result


@pytest.fixture(scope="session")
def deletion_case(ray_session, tmp_path_factory):
    """Ids D to delete and the reference: a fresh training on digits without D."""
    base = tmp_path_factory.mktemp("ids")
    from clul_ray import Pipeline

    probe = Pipeline(str(base / "probe"))
    probe.train(tiny_config(epochs=1))
    ids, shard, slc = probe.store.read_index()
    # shard 0: slice 1 and 2; shard 2: slice 2; shard 1 untouched
    d = [int(ids[(shard == 0) & (slc == 1)][0]), int(ids[(shard == 0) & (slc == 2)][3]),
         int(ids[(shard == 2) & (slc == 2)][1])]
    ref_root = tmp_path_factory.mktemp("ref") / "root"
    data = digits_parquet(tmp_path_factory.mktemp("data") / "digits_minus_d.parquet", d)
    ref = Pipeline(str(ref_root)).train(tiny_config(dataset=data, input_shape=[1, 8, 8],
                                                    num_classes=10))
    return d, ref


class DriverCopies:
    """How many times this process serialized each object of some types for Ray: a
    ``ray.put``, a task's argument, ``tune.with_parameters``' own put of a value (a ref
    passed to it is not serialized again). Objects are found inside what is serialized
    through dataclass fields, dicts, lists and tuples, and kept so that ids stay unique."""

    def __init__(self, types: tuple[type, ...]):
        self.types, self.counts, self.kept = types, {}, {}

    def _found(self, value, seen: set[int], depth: int = 0):
        import dataclasses

        if id(value) in seen or depth > 6:
            return
        seen.add(id(value))
        if isinstance(value, self.types):
            yield value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            parts = [getattr(value, f.name) for f in dataclasses.fields(value)]
        elif isinstance(value, dict):
            parts = list(value.values())
        elif isinstance(value, list | tuple):
            parts = list(value)
        else:
            return
        for part in parts:
            yield from self._found(part, seen, depth + 1)

    def saw(self, value) -> None:
        for obj in self._found(value, set()):
            self.kept[id(obj)] = obj
            self.counts[id(obj)] = self.counts.get(id(obj), 0) + 1

    def of(self, kind: type) -> list[int]:
        """The serialization count of every object of ``kind`` seen, in first-seen order."""
        return [n for i, n in self.counts.items() if isinstance(self.kept[i], kind)]


@contextmanager
def driver_copies(*types: type):
    """Within: a :class:`DriverCopies` of ``types`` (wraps Ray's serialization context)."""
    from ray._private.serialization import SerializationContext

    copies = DriverCopies(types)
    real = SerializationContext.serialize

    def serialize(self, value):
        copies.saw(value)
        return real(self, value)

    SerializationContext.serialize = serialize
    try:
        yield copies
    finally:
        SerializationContext.serialize = real
