"""``synthetic-fair:N``: labelled rows with a planted sensitive attribute ``z`` and stated
correlations, generated in blocks (a pure function of the block number and the options).

Options: ``synthetic-fair:N:dim=D:groups=G:seed=S`` (defaults dim 8, groups 3, seed 0).

- ``z`` ∈ {0..G-1} with weights ∝ (G, G-1, .., 1) (for G = 3: 1/2, 1/3, 1/6, never equal),
  independent of the label;
- ``label`` y ∈ {0, 1}, P(y = 1) = 1/2;
- feature j has the role ``j % 4``:
  0 carries y:       x = 0.6·(2y−1) + N(0, 1)
  1 carries z:       x = μ_z + σ_z·N(0, 1),  μ_z = 1.2·z − 1, σ_z = 0.6 + 0.4·z
  2 carries y and z: x = 0.6·(2y−1) + 0.8·μ_z + N(0, 1)
  3 is noise:        x = N(0, 1)
  so z is predictable from the role-1 features (mean and scale) and role-2 ones (mean), y
  from the role-0 and role-2 ones (a Bayes accuracy of about 0.88 at dim 8). Given z the
  features are independent up to y, so the per-feature (quantile) barycenter already makes
  X̂ independent of z; the Gaussian one matches two moments of a y-mixture.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

FAIR_BLOCK = 50_000
SENSITIVE = "z"


def fair_weights(groups: int) -> np.ndarray:
    w = np.arange(groups, 0, -1, dtype=np.float64)
    return w / w.sum()


def fair_block(block: int, n: int, seed: int, groups: int, dim: int) -> pa.Table:
    """Rows [block*B, min(n, (block+1)*B)) with columns id, label, x (dim floats), z."""
    start = block * FAIR_BLOCK
    stop = min(n, start + FAIR_BLOCK)
    m = stop - start
    rng = np.random.default_rng([seed, 0xFA1, block])
    z = rng.choice(groups, size=m, p=fair_weights(groups))
    y = rng.integers(0, 2, m)
    mu, sd = 1.2 * z - 1.0, 0.6 + 0.4 * z
    noise = rng.normal(0.0, 1.0, (m, dim))
    sy = (2 * y - 1).astype(np.float64)
    role = np.arange(dim) % 4
    x = np.empty((m, dim))
    x[:, role == 0] = 0.6 * sy[:, None] + noise[:, role == 0]
    x[:, role == 1] = mu[:, None] + sd[:, None] * noise[:, role == 1]
    x[:, role == 2] = 0.6 * sy[:, None] + 0.8 * mu[:, None] + noise[:, role == 2]
    x[:, role == 3] = noise[:, role == 3]
    flat = pa.array(x.astype(np.float32).reshape(-1))
    return pa.table({"id": pa.array(np.arange(start, stop, dtype=np.int64)),
                     "label": pa.array(y.astype(np.int64)),
                     "x": pa.FixedSizeListArray.from_arrays(flat, dim),
                     SENSITIVE: pa.array(z.astype(np.int64))})


def parse_fair(spec: str, rest: str) -> dict:
    """``N[:key=value...]`` -> options (n, dim, groups, seed, blocks); ValueError on bad input."""
    n_s, *opts = rest.split(":") if rest else [""]
    try:
        n = int(n_s.replace("_", ""))
    except ValueError:
        raise ValueError(f"synthetic-fair needs a row count: 'synthetic-fair:N', got '{spec}'") \
            from None
    o = {}
    for p in opts:
        k, eq, v = p.partition("=")
        if not eq or k not in ("dim", "groups", "seed"):
            raise ValueError(f"bad synthetic-fair option '{p}' in '{spec}' "
                             "(expected dim=D, groups=G or seed=S)")
        o[k] = int(v)
    dim, groups = o.get("dim", 8), o.get("groups", 3)
    if n <= 0 or dim < 2 or groups < 2:
        raise ValueError(f"synthetic-fair needs N > 0, dim >= 2, groups >= 2, got '{spec}'")
    return {"n": n, "dim": dim, "groups": groups, "seed": o.get("seed", 0),
            "blocks": -(-n // FAIR_BLOCK), "make": fair_block}
