import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clul_ray.data.sources import SYNTHETIC_BLOCK, features, open_source
from clul_ray.errors import ClulError


def write(tmp_path, **cols):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table(cols), path)
    return f"parquet:{path}"


def good_cols(n=6):
    return {"id": pa.array(np.arange(n), pa.int64()), "label": pa.array(np.arange(n) % 2),
            "f1": np.linspace(0, 1, n), "f2": np.ones(n)}


def test_digits_is_the_bundled_default():
    src = open_source("digits")
    t = next(src.iter_tables())
    assert t.num_rows == 1797 and src.num_classes == 10 and src.input_shape == (1, 8, 8)
    assert t.column("id").type == pa.int64()
    assert 0.0 <= features(t).min() and features(t).max() <= 1.0
    assert src.validate() == 1797


def test_synthetic_blocks_are_deterministic_and_sized():
    n = SYNTHETIC_BLOCK + 123
    a = open_source(f"synthetic:{n}:dim=8:classes=4")
    tables = list(a.iter_tables())
    assert [t.num_rows for t in tables] == [SYNTHETIC_BLOCK, 123]
    ids = np.concatenate([t.column("id").to_numpy() for t in tables])
    assert (ids == np.arange(n)).all()
    again = list(open_source(f"synthetic:{n}:dim=8:classes=4").iter_tables())
    assert np.array_equal(features(tables[1]), features(again[1]))
    ray_rows = open_source(f"synthetic:{n}:dim=8:classes=4").ray_dataset().to_arrow_refs()
    import ray

    rt = pa.concat_tables(ray.get(ray_rows)).sort_by("id")
    assert rt.num_rows == n
    assert np.array_equal(features(rt)[-123:], features(tables[1]))


def test_parquet_numeric_columns_and_list_column(tmp_path):
    src = open_source(write(tmp_path, **good_cols()))
    assert src.input_shape == (2,) and src.num_classes == 2
    assert src.validate() == 6
    x = pa.array([[1.0, 2.0, 3.0]] * 4, pa.list_(pa.float32()))
    src = open_source(write(tmp_path, id=pa.array(range(4), pa.int64()),
                            label=pa.array([0, 1, 2, 1]), pix=x))
    assert src.input_shape == (3,) and src.num_classes == 3


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(id=pa.array([0, 1, 2, 2, 4, 5], pa.int64())), "duplicate ids"),
    (lambda c: c.update(label=pa.array([0, None, 1, 0, 1, 0], pa.int64())), "missing labels"),
    (lambda c: c.update(f1=np.array([0, np.nan, 1, 1, 1, 1.0])), "NaN"),
    (lambda c: c.pop("label"), "missing required column 'label'"),
    (lambda c: c.update(label=pa.array(["a"] * 6)), "'label' must be an integer"),
    (lambda c: c.update(f1=pa.array(["x"] * 6)), "not numeric"),
    (lambda c: c.update(label=pa.array([0, -1, 1, 0, 1, 0])), "negative label"),
])
def test_bad_parquet_is_refused(tmp_path, mutate, message):
    cols = good_cols()
    mutate(cols)
    with pytest.raises(ClulError, match=message) as e:
        open_source(write(tmp_path, **cols)).validate()
    assert "\n" not in str(e.value)


def test_empty_and_missing_and_unknown_sources(tmp_path):
    empty = {"id": pa.array([], pa.int64()), "label": pa.array([], pa.int64()),
             "f": pa.array([], pa.float64())}
    with pytest.raises(ClulError, match="empty"):
        open_source(write(tmp_path, **empty)).validate()
    with pytest.raises(ClulError, match="not found"):
        open_source(f"parquet:{tmp_path}/nope.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(ClulError, match="not a readable Parquet"):
        open_source(f"parquet:{tmp_path}/junk.parquet")
    with pytest.raises(ClulError, match="unknown dataset"):
        open_source("imagenet")
    with pytest.raises(ClulError, match="row count"):
        open_source("synthetic:lots")


def test_torchvision_sets_need_local_files(tmp_path):
    with pytest.raises(ClulError, match="--data-dir"):
        open_source("cifar10")
    with pytest.raises(ClulError, match="not found under .*--download"):
        open_source("mnist", data_dir=str(tmp_path))


@pytest.mark.pure
def test_a_missing_group_column_is_a_typed_refusal(tmp_path):
    """Callers decide on the error's type and fields, never on its message."""
    from clul_ray.errors import MissingGroupColumn

    with pytest.raises(MissingGroupColumn) as e:
        open_source("digits", group_column="user")
    assert (e.value.column, e.value.has_columns) == ("user", False)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": [1, 2], "label": [0, 1], "f": [0.5, 1.5]}), path)
    with pytest.raises(MissingGroupColumn) as e:
        open_source(f"parquet:{path}", group_column="user")
    assert (e.value.column, e.value.has_columns) == ("user", True)
