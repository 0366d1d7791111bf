"""Property-based tests of what a user writes into a config and into a Parquet dataset: a
valid setting is taken, anything else is refused with a one-line ClulError, never another
exception. No Ray is started."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clul_ray.config import FLAT, GROUPS, make_config
from clul_ray.data.sources import canonicalize
from clul_ray.errors import ClulError

pytestmark = pytest.mark.pure
FAST = settings(max_examples=200, deadline=None, database=None)

values = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                   st.lists(st.integers(-3, 70), max_size=4),
                   st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
keys = st.one_of(st.sampled_from(sorted(FLAT)), st.sampled_from(sorted(GROUPS)),
                 st.text(max_size=10))


@FAST
@given(st.dictionaries(keys, values, max_size=5))
def test_any_config_mapping_is_taken_or_refused_in_one_line(raw):
    try:
        cfg = make_config(**{str(k): v for k, v in raw.items()})
    except ClulError as e:
        assert "\n" not in str(e) and str(e).startswith("invalid config")
        return
    assert cfg.partition.shards >= 1 and cfg.partition.slices >= 1
    assert len(cfg.training_digest()) == 64


columns = st.sampled_from(["id", "label", "f0", "f1", "x", "g"])
arrays = st.one_of(
    st.lists(st.integers(-5, 5), min_size=0, max_size=6).map(pa.array),
    st.lists(st.one_of(st.none(), st.integers(-5, 5)), max_size=6).map(pa.array),
    st.lists(st.floats(allow_nan=True, width=32), max_size=6).map(
        lambda v: pa.array(v, pa.float32())),
    st.lists(st.text(max_size=3), max_size=6).map(pa.array),
    st.lists(st.lists(st.floats(-1, 1, width=32), min_size=0, max_size=3), max_size=6)
    .map(pa.array),
)


@FAST
@given(st.dictionaries(columns, arrays, min_size=1, max_size=4),
       st.sampled_from([None, "g"]))
def test_any_parquet_table_is_canonical_or_refused_in_one_line(cols, group):
    n = min(len(a) for a in cols.values())
    table = pa.table({k: a.slice(0, n) for k, a in cols.items()})
    try:
        out = canonicalize(table, group, "parquet:user.parquet")
    except ClulError as e:
        assert "\n" not in str(e) and str(e).startswith("parquet:user.parquet")
        return
    assert out.column_names[:3] == ["id", "label", "x"] and out.num_rows == n
    assert out.schema.field("id").type == pa.int64()
    x = out.column("x").combine_chunks()
    assert x.null_count == 0 and np.asarray(x.flatten()).dtype == np.float32
