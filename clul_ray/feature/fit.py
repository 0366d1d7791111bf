"""Streaming statistics and the barycenter maths of feature unlearning (pure: numpy, scipy,
POT; no Ray). ALGORITHMS.md §6.

Statistics are computed per block and merged, so a Ray Data pass and an in-memory pass over
the same rows give the same numbers:

- **moments** per group value: count, mean and centred sum of outer products, merged with
  Chan et al.'s parallel update (no catastrophic cancellation of Σxxᵀ − n·mmᵀ);
- **a per-group sample** for the quantiles: every row gets a key, a uniform number in
  [0, 1) hashed from (seed, id); a group's sample is its ``size`` rows with the smallest
  keys. A block emits only its rows below a per-group threshold τ_z set from the counts of
  the moments pass (τ_z = (K + 6√K + 64) / n_z), and the merge keeps the K smallest, so the
  sample is the same set whatever the blocks were, and is the whole group when n_z ≤ K
  (then the quantiles are exact up to the grid). It is a uniform sample without
  replacement: each group CDF is within ε of the truth with probability 1 − δ,
  ε = √(ln(2/δ) / 2K) (DKW; K = 100 000, δ = 0.01: ε ≈ 0.0051).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh

MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
MIN_ROWS = {"quantile": 10, "ot": 10}  # gaussian: dim + 1 (a full-rank covariance)
OT_MAX_ROWS = 10_000
OT_SUPPORT = 500
TOL = 1e-9  # ALGORITHMS.md stops at 1e-4; the same fixed point, reached closer


# ---- hashing ----------------------------------------------------------------------------
def splitmix64(v: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = np.asarray(v, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def row_keys(ids: np.ndarray, seed: int) -> np.ndarray:
    """A uniform key in [0, 1) per row, a pure function of (seed, id)."""
    h = splitmix64(np.asarray(ids).astype(np.int64).view(np.uint64) ^ splitmix64(
        np.uint64(seed)))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def rows_digest(ids: np.ndarray, x: np.ndarray, extra: np.ndarray | None = None) -> int:
    """An order-independent digest of rows: the wrapping sum of one 64-bit hash per row of
    (id, the float32 bits of x, extra). Sums of blocks add, so any batching gives the same."""
    h = splitmix64(np.asarray(ids).astype(np.int64).view(np.uint64))
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    for j in range(bits.shape[1]):
        h = splitmix64(h ^ bits[:, j])
    if extra is not None:
        h = splitmix64(h ^ np.asarray(extra).astype(np.int64).view(np.uint64))
    with np.errstate(over="ignore"):
        return int(h.sum(dtype=np.uint64))


# ---- moments ----------------------------------------------------------------------------
@dataclass
class Moments:
    """One group's count, mean (d,) and centred sum of outer products (d, d), float64."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        c = x - mean
        return cls(len(x), mean, c.T @ c)

    def merge(self, o: Moments) -> Moments:
        n = self.n + o.n
        delta = o.mean - self.mean
        mean = self.mean + delta * (o.n / n)
        return Moments(n, mean, self.m2 + o.m2 + np.outer(delta, delta) * (self.n * o.n / n))

    @property
    def cov(self) -> np.ndarray:
        return self.m2 / self.n


def group_moments(x: np.ndarray, z: np.ndarray) -> dict:
    """Group value -> Moments of one block."""
    return {v: Moments.of(x[z == v]) for v in np.unique(z).tolist()}


def merge_moments(parts: list[dict]) -> dict:
    out: dict = {}
    for part in parts:
        for v, m in part.items():
            out[v] = out[v].merge(m) if v in out else m
    return dict(sorted(out.items()))


# ---- the per-group sample ---------------------------------------------------------------
def thresholds(counts: dict, size: int) -> dict:
    """τ_z: a block emits the rows of group z whose key is below it (≈ K + 6√K per group)."""
    return {v: min(1.0, (size + 6 * size ** 0.5 + 64) / n) for v, n in counts.items()}


def block_sample(ids: np.ndarray, x: np.ndarray, z: np.ndarray, taus: dict,
                 seed: int) -> dict:
    """Group value -> (keys, rows) of one block's rows under the group's threshold."""
    keys = row_keys(ids, seed)
    tau = np.array([taus.get(v, 0.0) for v in z.tolist()]) if len(z) else np.zeros(0)
    keep = keys < tau
    out = {}
    for v in np.unique(z[keep]).tolist():
        m = keep & (z == v)
        out[v] = (keys[m], np.asarray(x[m], dtype=np.float64))
    return out


def merge_samples(parts: list[dict], size: int) -> dict:
    """Group value -> its sample: the ``size`` rows with the smallest keys, in key order."""
    pooled: dict = {}
    for part in parts:
        for v, kx in part.items():
            pooled.setdefault(v, []).append(kx)
    out = {}
    for v, kxs in sorted(pooled.items()):
        keys = np.concatenate([k for k, _ in kxs])
        xs = np.concatenate([x for _, x in kxs])
        order = np.lexsort((np.arange(len(keys)), keys))[:size]
        out[v] = xs[order]
    return out


# ---- the barycenters --------------------------------------------------------------------
def quantile_grid(sample: np.ndarray, levels: int) -> np.ndarray:
    """(levels, d) quantiles of each feature at u = 0, 1/(L-1), ..., 1 (linear)."""
    return np.quantile(sample, np.linspace(0.0, 1.0, levels), axis=0)


def quantile_barycenter(grids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Q̄(u) = Σ_z p_z Q_z(u), per feature: grids (k, L, d) -> (L, d)."""
    return np.tensordot(weights, grids, axes=1)


def sym_sqrt(s: np.ndarray, inverse: bool = False) -> np.ndarray:
    """The symmetric square root (or its inverse) of a symmetric PSD matrix, by eigh."""
    w, v = eigh((s + s.T) / 2)
    w = np.clip(w, 0.0, None)
    if inverse:
        w = np.where(w > 0, w, np.inf)
        return (v / np.sqrt(w)) @ v.T
    return (v * np.sqrt(w)) @ v.T


def gaussian_barycenter(covs: np.ndarray, weights: np.ndarray, tol: float = TOL,
                        max_iter: int = 500) -> tuple[np.ndarray, int]:
    """Σ̄ ← Σ_z p_z (Σ̄^½ Σ_z Σ̄^½)^½ from Σ̄ = Σ p_z Σ_z until ‖ΔΣ̄‖_F < tol. (Σ̄, iterations)."""
    sbar = np.tensordot(weights, covs, axes=1)
    for it in range(1, max_iter + 1):
        r = sym_sqrt(sbar)
        new = sum(p * sym_sqrt(r @ c @ r) for p, c in zip(weights, covs, strict=True))
        done = np.linalg.norm(new - sbar) < tol
        sbar = new
        if done:
            return sbar, it
    return sbar, max_iter


def gaussian_maps(covs: np.ndarray, sbar: np.ndarray) -> np.ndarray:
    """A_z = Σ_z^{-½} (Σ_z^½ Σ̄ Σ_z^½)^½ Σ_z^{-½}, the optimal map N(0, Σ_z) -> N(0, Σ̄)."""
    out = []
    for c in covs:
        r, ri = sym_sqrt(c), sym_sqrt(c, inverse=True)
        out.append(ri @ sym_sqrt(r @ sbar @ r) @ ri)
    return np.stack(out)


def ot_barycenter(samples: list[np.ndarray], weights: np.ndarray, support: int,
                  seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """POT's free-support Wasserstein-2 barycenter of the groups' empirical measures
    (``support`` points, started from a seeded sample of the pooled rows), then each group's
    optimal plan π_z to it and the barycentric projection x_i ↦ Σ_j π_ij y_j / Σ_j π_ij.
    Returns (barycenter support, one image array per group)."""
    import ot

    pooled = np.concatenate(samples)
    rng = np.random.default_rng([seed, 0x07])
    k = min(support, len(pooled))
    init = pooled[rng.choice(len(pooled), k, replace=False)]
    a = [np.full(len(s), 1.0 / len(s)) for s in samples]
    bary = ot.lp.free_support_barycenter(samples, a, init, weights=weights,
                                         numItermax=20, stopThr=1e-6)
    b = np.full(k, 1.0 / k)
    images = []
    for s, ai in zip(samples, a, strict=True):
        plan = ot.emd(ai, b, ot.dist(s, bary), numItermax=1_000_000)
        images.append((plan @ bary) / plan.sum(axis=1, keepdims=True))
    return bary, images
