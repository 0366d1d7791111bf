"""The fitted feature-unlearning transform: a pydantic record of the barycenter statistics,
its digest, and the map x ↦ x_t = (1−t)·x + t·x̂ (pure numpy; the map needs each row's z).

- ``quantile``: per group and feature the quantile grid Q_z and the barycenter grid
  Q̄ = Σ p_z Q_z; x̂_j = Q̄_j(F_z,j(x_j)), F_z,j the inverse of Q_z,j by linear
  interpolation (tied grid values share their mean level; outside the group's sampled range
  u is clamped to 0 or 1).
- ``gaussian``: x̂ = A_z (x − m_z) + m̄, m̄ = Σ p_z m_z.
- ``ot``: the groups' fitted rows and their barycentric images; a row maps to the image of
  its nearest fitted row of its group (on the fitted rows themselves: their images).

``build`` makes it from merged statistics (the in-memory and the Ray Data fit share it);
``fit_tables`` is the in-memory fit over Arrow tables (two passes over the list).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, PrivateAttr

from ..errors import ClulError
from . import fit

METHODS = ("quantile", "gaussian", "ot")
LEVELS = 1001
SAMPLE_SIZE = 100_000
FORMAT = 1

Matrix = list[list[float]]


class FeatureTransform(BaseModel):
    format: int = FORMAT
    method: Literal["quantile", "gaussian", "ot"]
    sensitive: str
    groups: list[Any]
    counts: list[int]
    weights: list[float]
    dim: int
    seed: int = 0
    sample_size: int | None = None
    data_digest: str = ""
    quantiles: list[Matrix] | None = None  # (k, L, d)
    barycenter: Matrix | None = None  # (L, d)
    means: Matrix | None = None  # (k, d)
    mean_bar: list[float] | None = None
    maps: list[Matrix] | None = None  # (k, d, d)
    cov_bar: Matrix | None = None
    iterations: int | None = None
    ot_sources: list[Matrix] | None = None
    ot_images: list[Matrix] | None = None
    _cache: dict = PrivateAttr(default_factory=dict)

    # ---- identity -----------------------------------------------------------------------
    def digest(self) -> str:
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()

    def to_json(self) -> str:
        return self.model_dump_json()

    # ---- z -> group codes ---------------------------------------------------------------
    def codes(self, z: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
        """Each row's group index; refuses a missing value or a group the fit never saw."""
        col = z if isinstance(z, pa.Array | pa.ChunkedArray) else pa.array(np.asarray(z))
        try:
            values = pa.array(self.groups).cast(col.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = pa.array([str(g) for g in self.groups]).cast(col.type)
        idx = pc.index_in(col, value_set=values)
        if idx.null_count:
            bad = pc.filter(col, pc.is_null(idx)).to_pylist()[:3]
            raise ClulError(f"sensitive column '{self.sensitive}' has values the transform "
                            f"was not fitted on: {bad} (fitted groups: {self.groups})")
        return np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int64)

    # ---- the map ------------------------------------------------------------------------
    def _arrays(self) -> dict:
        c = self._cache
        if c:
            return c
        if self.method == "quantile":
            q, bar = np.asarray(self.quantiles), np.asarray(self.barycenter)
            u = np.linspace(0.0, 1.0, q.shape[1])
            c["inv"] = [[_dedup(q[g, :, j], u) for j in range(self.dim)]
                        for g in range(len(self.groups))]
            c["u"], c["bar"] = u, bar
        elif self.method == "gaussian":
            c["m"], c["A"] = np.asarray(self.means), np.asarray(self.maps)
            c["mbar"] = np.asarray(self.mean_bar)
        else:
            from scipy.spatial import cKDTree

            c["trees"] = [cKDTree(np.asarray(s)) for s in self.ot_sources]
            c["images"] = [np.asarray(i) for i in self.ot_images]
        return c

    def map(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """x̂ (float64), each row by its group's map."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ClulError(f"rows have {x.shape[-1] if x.ndim else 0} features; the "
                            f"transform was fitted on {self.dim}")
        c, out = self._arrays(), np.empty_like(x)
        for g in np.unique(codes).tolist():
            m = codes == g
            xg = x[m]
            if self.method == "quantile":
                cols = [np.interp(np.interp(xg[:, j], *c["inv"][g][j]), c["u"], c["bar"][:, j])
                        for j in range(self.dim)]
                out[m] = np.stack(cols, axis=1)
            elif self.method == "gaussian":
                out[m] = (xg - c["m"][g]) @ c["A"][g].T + c["mbar"]
            else:
                _, nn = c["trees"][g].query(xg)
                out[m] = c["images"][g][nn]
        return out

    def apply(self, x: np.ndarray, codes: np.ndarray, t: float = 1.0) -> np.ndarray:
        """x_t = (1−t)·x + t·x̂ as float32."""
        x64 = np.asarray(x, dtype=np.float64)
        if t == 0.0:
            return x64.astype(np.float32)
        return ((1.0 - t) * x64 + t * self.map(x64, codes)).astype(np.float32)

    def apply_table(self, table: pa.Table, t: float) -> pa.Table:
        """Canonical rows (id, label, x, sensitive) -> (id, label, x_t)."""
        x = table_features(table)
        xt = self.apply(x, self.codes(table.column(self.sensitive)), t)
        flat = pa.array(np.ascontiguousarray(xt).reshape(-1))
        return pa.table({"id": table.column("id"), "label": table.column("label"),
                         "x": pa.FixedSizeListArray.from_arrays(flat, self.dim)})


def _dedup(q: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xp, fp) for np.interp: the grid's distinct values, each with its tied levels' mean."""
    xp, inv = np.unique(q, return_inverse=True)
    return xp, np.bincount(inv, weights=u) / np.bincount(inv)


def table_features(table: pa.Table) -> np.ndarray:
    col = table.column("x").combine_chunks()
    d = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), d)


# ---- fitting from merged statistics --------------------------------------------------------
def check_groups(method: str, moments: dict, dim: int, sensitive: str) -> None:
    """Refuse what the method cannot fit, in one line."""
    if method not in METHODS:
        raise ClulError(f"unknown method '{method}' (expected {', '.join(METHODS)})")
    if len(moments) < 2:
        raise ClulError(f"sensitive column '{sensitive}' has {len(moments)} group(s); "
                        "feature unlearning needs at least 2")
    need = dim + 1 if method == "gaussian" else fit.MIN_ROWS[method]
    small = {v: m.n for v, m in moments.items() if m.n < need}
    if small:
        v, n = next(iter(small.items()))
        raise ClulError(f"group {sensitive}={v!r} has {n} rows; method {method} needs at "
                        f"least {need} per group")
    total = sum(m.n for m in moments.values())
    if method == "ot" and total > fit.OT_MAX_ROWS:
        raise ClulError(f"method ot is for small data: {total} rows > {fit.OT_MAX_ROWS}; "
                        "use --method quantile or gaussian")


def build(method: str, sensitive: str, moments: dict, samples: dict | None, *,
          seed: int = 0, sample_size: int | None = None, levels: int = LEVELS,
          data_digest: str = "") -> FeatureTransform:
    if not moments:
        raise ClulError("the dataset has no rows")
    groups = list(moments)
    counts = np.array([moments[v].n for v in groups])
    p = counts / counts.sum()  # p_z, never 1/2-1/2
    dim = int(moments[groups[0]].mean.shape[0])
    check_groups(method, moments, dim, sensitive)
    kw: dict[str, Any] = dict(method=method, sensitive=sensitive, groups=groups,
                              counts=counts.tolist(), weights=p.tolist(), dim=dim, seed=seed,
                              data_digest=data_digest)
    if method == "quantile":
        grids = np.stack([fit.quantile_grid(samples[v], levels) for v in groups])
        kw.update(quantiles=grids.tolist(), sample_size=sample_size,
                  barycenter=fit.quantile_barycenter(grids, p).tolist())
    elif method == "gaussian":
        means = np.stack([moments[v].mean for v in groups])
        covs = np.stack([moments[v].cov for v in groups])
        sbar, its = fit.gaussian_barycenter(covs, p)
        kw.update(means=means.tolist(), mean_bar=(p @ means).tolist(), cov_bar=sbar.tolist(),
                  maps=fit.gaussian_maps(covs, sbar).tolist(), iterations=its)
    else:
        xs = [samples[v] for v in groups]
        _, images = fit.ot_barycenter(xs, p, fit.OT_SUPPORT, seed)
        kw.update(ot_sources=[s.tolist() for s in xs], ot_images=[i.tolist() for i in images],
                  sample_size=sample_size)
    return FeatureTransform(**kw)


def block_arrays(table: pa.Table, sensitive: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = table.column(sensitive)
    if z.null_count:
        raise ClulError(f"sensitive column '{sensitive}' has missing values")
    return (table.column("id").to_numpy(), table_features(table),
            np.asarray(z.to_numpy(zero_copy_only=False)))


def fit_tables(tables: list[pa.Table], sensitive: str, method: str, *, seed: int = 0,
               sample_size: int = SAMPLE_SIZE, levels: int = LEVELS) -> FeatureTransform:
    """The in-memory fit: the same per-block statistics and merges as the Ray Data fit."""
    blocks = [block_arrays(t, sensitive) for t in tables if t.num_rows]
    moments = fit.merge_moments([fit.group_moments(x, z) for _, x, z in blocks])
    digest = sum(fit.rows_digest(i, x) for i, x, _ in blocks) % (1 << 64)
    if moments:  # before the sample pass
        check_groups(method, moments, blocks[0][1].shape[1], sensitive)
    samples = None
    if method != "gaussian":
        taus = fit.thresholds({v: m.n for v, m in moments.items()}, sample_size)
        samples = fit.merge_samples([fit.block_sample(i, x, z, taus, seed)
                                     for i, x, z in blocks], sample_size)
    return build(method, sensitive, moments, samples, seed=seed, sample_size=sample_size,
                 levels=levels, data_digest=f"{digest:016x}")
