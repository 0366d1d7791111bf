"""The Ray Data edge: fit the transform from streaming statistics and apply it with
``map_batches``, so no process holds the whole dataset.

Fit = two passes of ``map_batches`` over the canonical rows (id, label, x, sensitive):

1. per batch, each group's moments, the batch's row digest and its non-finite row count
   (:func:`fit.group_moments`, :func:`fit.rows_digest`), merged on the driver;
2. (quantile, ot, and the report) per batch, the rows under each group's key threshold
   (:func:`fit.block_sample`) and the report's rows (a second key, threshold
   ``report_rows / n``), merged on the driver.

Each batch sends back one pickled payload; what reaches the driver is O(groups · d²) for
the moments and O(groups · K · d) for the sample, whatever the row count. The merged
statistics go through the same :func:`transform.build` as the in-memory fit, so both give
the same transform for the same rows."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ClulError
from . import fit
from .transform import LEVELS, SAMPLE_SIZE, FeatureTransform, block_arrays, build, check_groups

BATCH = 65_536
REPORT_SEED = 0x7E57


def _payload(obj: Any) -> pa.Table:
    return pa.table({"payload": pa.array([pickle.dumps(obj)], pa.binary())})


def _gather(ds, fn) -> list[Any]:
    mapped = ds.map_batches(fn, batch_format="pyarrow", batch_size=BATCH)
    return [pickle.loads(r["payload"]) for r in mapped.take_all()]


def _moments_fn(sensitive: str):
    def f(t: pa.Table) -> pa.Table:  # bad rows are counted, not raised: the driver refuses
        nulls = t.column(sensitive).null_count
        if nulls:
            return _payload(({}, 0, 0, nulls))
        ids, x, z = block_arrays(t, sensitive)
        bad = int((~np.isfinite(x).all(axis=1)).sum()) if len(x) else 0
        return _payload((fit.group_moments(x, z), fit.rows_digest(ids, x), bad, 0))
    return f


def _sample_fn(sensitive: str, taus: dict | None, seed: int, report_tau: float):
    def f(t: pa.Table) -> pa.Table:
        ids, x, z = block_arrays(t, sensitive)
        sample = fit.block_sample(ids, x, z, taus, seed) if taus is not None else {}
        keep = fit.row_keys(ids, REPORT_SEED) < report_tau
        rows = (ids[keep], x[keep], t.column("label").to_numpy()[keep], z[keep])
        return _payload((sample, rows))
    return f


def fit_dataset(ds, sensitive: str, method: str, *, seed: int = 0,
                sample_size: int = SAMPLE_SIZE, levels: int = LEVELS,
                report_rows: int = 20_000) -> tuple[FeatureTransform, dict]:
    """(the fitted transform, the report's rows {id, x, label, z}) from a Ray Dataset."""
    parts = _gather(ds, _moments_fn(sensitive))
    nulls = sum(p[3] for p in parts)
    if nulls:
        raise ClulError(f"sensitive column '{sensitive}' has missing values ({nulls} rows)")
    bad = sum(p[2] for p in parts)
    if bad:
        raise ClulError(f"{bad} rows have NaN or infinite features")
    moments = fit.merge_moments([p[0] for p in parts])
    digest = sum(p[1] for p in parts) % (1 << 64)
    if not moments:
        raise ClulError("the dataset has no rows")
    dim = int(next(iter(moments.values())).mean.shape[0])
    check_groups(method, moments, dim, sensitive)
    n = sum(m.n for m in moments.values())
    taus = None if method == "gaussian" else fit.thresholds(
        {v: m.n for v, m in moments.items()}, sample_size)
    parts = _gather(ds, _sample_fn(sensitive, taus, seed, min(1.0, report_rows / n)))
    samples = fit.merge_samples([s for s, _ in parts], sample_size) if taus else None
    cols = list(zip(*[r for _, r in parts], strict=True))
    ids, x, y, z = (np.concatenate(c) for c in cols)
    order = np.argsort(ids, kind="stable")
    report = {"id": ids[order], "x": x[order], "label": y[order], "z": z[order]}
    tr = build(method, sensitive, moments, samples, seed=seed, sample_size=sample_size,
               levels=levels, data_digest=f"{digest:016x}")
    return tr, report


def transform_dataset(ds, transform: FeatureTransform, t: float):
    """The Ray Dataset of (id, label, x_t): the transform applied batch by batch."""
    def f(batch: pa.Table) -> pa.Table:
        return transform.apply_table(batch, t)

    return ds.map_batches(f, batch_format="pyarrow", batch_size=BATCH)


def write_dataset(ds, transform: FeatureTransform, t: float, out: str) -> None:
    """Apply and write Parquet files under ``out`` (a folder ``parquet:OUT`` reads)."""
    transform_dataset(ds, transform, t).write_parquet(out)


def parquet_digest(path: str) -> tuple[int, str]:
    """(rows, order-independent digest) of a written Parquet folder, streamed by batch."""
    import pyarrow.dataset as pads

    from .transform import table_features

    n, total = 0, 0
    for b in pads.dataset(path, format="parquet").to_batches(batch_size=BATCH):
        t = pa.Table.from_batches([b])
        n += t.num_rows
        total = (total + fit.rows_digest(t.column("id").to_numpy(), table_features(t),
                                         t.column("label").to_numpy())) % (1 << 64)
    return n, f"{total:016x}"
