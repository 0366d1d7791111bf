"""What a deletion's or an unlearn's driver imports: on a cluster the retrain (the edits)
runs on the root's warm workers, so the driver checks the request, reads the index, plans,
commits and scores cached predictions — numpy and pyarrow, never torch, scikit-learn,
pandas (whose import alone costs more than the driver's plan:
``clul_ray/storage/columns.py``) or pyarrow.compute."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
import ray
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from clul_ray.sisa.compute import warm
from clul_ray.storage.columns import from_numpy, keep_rows, list_values, table, to_numpy

DRIVER = """
import json, sys
from clul_ray.sisa.driver.pipeline import Pipeline
p = Pipeline(sys.argv[1], address=sys.argv[2])
out = p.delete([int(sys.argv[3])])
print(json.dumps({"backend": p.site.backend(p.config), "version": out["version"],
                  "loaded": sorted(m for m in ("torch", "sklearn", "pandas", "pyarrow.compute")
                                   if m in sys.modules)}))
"""


def test_a_deletion_driver_on_warm_workers_imports_only_what_it_uses(trained_root):
    root, _ = trained_root
    from clul_ray.storage.store import Store

    ids, shard, slc = Store(str(root)).read_index()
    one = int(ids[(shard == 1) & (slc == 2)][0])
    address = ray.get_runtime_context().gcs_address
    try:
        r = subprocess.run([sys.executable, "-c", DRIVER, str(root), address, str(one)],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "CLUL_RAY_LINEAGE": "inline"})
        assert r.returncode == 0, r.stderr[-2000:]
        out = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        warm.stop_workers(str(root))
    assert out["backend"] == "warm" and out["version"] == 2
    assert out["loaded"] == [], f"the deletion driver imported {out['loaded']}"


UNLEARN = """
import json, sys
from clul_ray.sisa.driver.pipeline import Pipeline
p = Pipeline(sys.argv[1], address=sys.argv[2])
out = p.unlearn("finetune", "ids:" + sys.argv[3], {"epochs": 1})
print(json.dumps({"backend": p.site.backend(p.config), "affected": out["affected"],
                  "loaded": sorted(m for m in ("torch", "sklearn", "pandas", "pyarrow.compute")
                                   if m in sys.modules)}))
"""


def test_an_unlearn_driver_on_warm_workers_imports_only_what_it_uses(trained_root, tmp_path):
    """The edits run on the warm workers, which load torch; the driver checks the method
    and params, resolves the forget scenario, plans and commits without torch, pandas or
    pyarrow.compute."""
    root, _ = trained_root
    from clul_ray.storage.store import Store

    ids, shard, slc = Store(str(root)).read_index()
    spec = tmp_path / "forget.txt"
    spec.write_text(str(int(ids[(shard == 2) & (slc == 1)][0])))
    address = ray.get_runtime_context().gcs_address
    try:
        r = subprocess.run([sys.executable, "-c", UNLEARN, str(root), address, str(spec)],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "CLUL_RAY_LINEAGE": "inline"})
        assert r.returncode == 0, r.stderr[-2000:]
        out = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        warm.stop_workers(str(root))
    assert out["backend"] == "warm" and out["affected"] == {"2": 1}
    assert out["loaded"] == [], f"the unlearn driver imported {out['loaded']}"


CHECK = """
import json, sys
import clul_ray.unlearn, clul_ray.sisa.compute.approximate
from clul_ray.errors import ClulError
from clul_ray.unlearn import method_names
from clul_ray.unlearn.api import check_for_root
params = check_for_root("finetune", {"lr": "0.01"}, 3)
try:
    check_for_root("scrub", {"lr": "abc"}, 0)
    refusal = None
except ClulError as e:
    refusal = str(e)
print(json.dumps({"params": params.model_dump(), "lm": method_names("lm"),
                  "all": method_names(), "refusal": refusal,
                  "loaded": sorted(m for m in ("torch", "sklearn", "pandas")
                                   if m in sys.modules)}))
"""


@pytest.mark.pure
def test_an_unlearn_driver_checks_method_and_params_without_torch():
    """The registry (every method, the language-model ones too), the params check and the
    forget scenario's module load no torch: the edits import it where they run."""
    r = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [], f"the unlearn driver's checks imported {out['loaded']}"
    assert out["params"] == {"seed": 3, "epochs": 6, "lr": 0.01, "batch_size": 64,
                             "optimizer": "adam", "momentum": 0.9, "weight_decay": 0.0}
    assert out["lm"] == ["ga", "grad_diff", "npo", "simnpo", "rmu", "kl_retain"]
    assert len(out["all"]) == 17 and "neural_mask" in out["all"]
    assert out["refusal"] == "parameter scrub.lr must be a number > 0, got 'abc'"


numeric = st.sampled_from([np.int8, np.int32, np.int64, np.uint16, np.uint64, np.float16,
                           np.float32, np.float64])


@pytest.mark.pure
@given(numeric.flatmap(lambda t: hnp.arrays(t, st.integers(0, 40))),
       st.lists(st.integers(0, 40), max_size=3))
def test_columns_convert_as_pyarrow_does(values, cuts):
    """Through DLPack and Arrow buffers, the same arrays pyarrow's own conversion gives,
    for plain, sliced and chunked columns."""
    a, want = from_numpy(values), pa.array(values)
    assert a.type == want.type and a.null_count == want.null_count == 0
    # bit for bit (``equals`` is false on NaN, even for an array and itself)
    assert (a.to_numpy(zero_copy_only=False).tobytes()
            == want.to_numpy(zero_copy_only=False).tobytes())
    np.testing.assert_array_equal(to_numpy(a), a.to_numpy(zero_copy_only=False))
    bounds = sorted({0, len(values), *[c for c in cuts if c <= len(values)]})
    chunked = pa.chunked_array([a.slice(x, y - x) for x, y in
                                zip(bounds, bounds[1:], strict=False)],
                               type=a.type)
    got = to_numpy(chunked)
    assert got.dtype == chunked.to_numpy().dtype
    np.testing.assert_array_equal(got, chunked.to_numpy())


@pytest.mark.pure
@given(hnp.arrays(np.bool_, st.integers(0, 70)))
def test_boolean_masks_pack_as_pyarrow_packs_them(mask):
    assert from_numpy(mask).equals(pa.array(mask))
    t = table({"id": np.arange(len(mask), dtype=np.int64)})
    np.testing.assert_array_equal(to_numpy(t.filter(from_numpy(mask)).column("id")),
                                  np.flatnonzero(mask))


@pytest.mark.pure
def test_columns_with_nulls_or_other_types_fall_back_to_pyarrow():
    with_null = pa.array([1, None, 3])
    np.testing.assert_array_equal(to_numpy(with_null), with_null.to_numpy(
        zero_copy_only=False))
    strings = pa.chunked_array([["a", "b"]])
    assert to_numpy(strings).tolist() == ["a", "b"]
    assert from_numpy(np.array(["x", "y"])).equals(pa.array(["x", "y"]))
    assert to_numpy(pa.chunked_array([], pa.int32())).dtype == np.int32


@pytest.mark.pure
@given(st.integers(1, 5), st.integers(0, 12), st.integers(0, 12))
def test_list_values_are_what_flatten_gives(size, n, start):
    """Row after row, also for a slice of a fixed-size list array."""
    flat = from_numpy(np.arange(size * n, dtype=np.float32))
    lists = pa.FixedSizeListArray.from_arrays(flat, size)
    part = lists.slice(min(start, n), max(0, n - start) // 2)
    for col in (lists, part):
        np.testing.assert_array_equal(list_values(col), col.flatten().to_numpy())


@pytest.mark.pure
@given(hnp.arrays(np.bool_, st.integers(0, 300)))
def test_keep_rows_is_filter(keep):
    """Few runs as slices, many through ``filter``: the same rows, in order, either way."""
    n = len(keep)
    t = table({"id": np.arange(n, dtype=np.int64), "v": np.arange(n, dtype=np.float32) / 2})
    assert keep_rows(t, keep).equals(t.filter(pa.array(keep)))
