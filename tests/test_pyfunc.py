"""The registered pyfunc's input contract: raw dataset rows in (its MLflow signature says how
wide), the class out; the raw -> features transform is the one the sources build rows with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from clul_ray.data.sources import features, open_source, raw_to_features
from clul_ray.errors import ClulError
from clul_ray.lineage.tracking import Tracking
from clul_ray.sisa.compute.ensemble import Ensemble
from clul_ray.sisa.records.rootconfig import read_config
from clul_ray.sisa.records.version import read_current
from clul_ray.storage.store import Store


def load_current(root, monkeypatch):
    import mlflow.pyfunc

    t = Tracking(Store(str(root)))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", t.uri)
    return mlflow.pyfunc.load_model(f"models:/{t.model_name}@current")


@pytest.mark.pure
def test_raw_to_features_is_the_transform_the_sources_build_rows_with():
    raw = load_digits()
    t = next(open_source("digits").iter_tables())
    x = raw_to_features("digits", raw.data, (1, 8, 8))
    assert x.dtype == np.float32 and x.tobytes() == features(t).tobytes()
    assert raw_to_features("digits", raw.images, (1, 8, 8)).tobytes() == x.tobytes()
    rng = np.random.default_rng(0)
    for data, shape in ((rng.integers(0, 256, (5, 28, 28), np.uint8), (1, 28, 28)),
                        (rng.integers(0, 256, (5, 32, 32, 3), np.uint8), (3, 32, 32))):
        want = (data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2))
        want = want.reshape(5, -1).astype(np.float32) / 255.0
        for form in (data, data.reshape(5, -1)):
            assert raw_to_features("cifar10", form, shape).tobytes() == want.tobytes()
    s = rng.normal(size=(4, 6)).astype(np.float32)
    for kind in ("synthetic", "parquet"):
        assert raw_to_features(kind, s, (6,)).tobytes() == s.tobytes()
    with pytest.raises(ClulError, match="expected rows of 64 raw features"):
        raw_to_features("digits", raw.data[:, :63], (1, 8, 8))


def test_registered_model_takes_raw_rows_with_a_signature(trained_base, monkeypatch):
    root, _ = trained_base
    model = load_current(root, monkeypatch)

    sig = model.metadata.signature
    assert sig is not None
    (inp,), (out,) = sig.inputs.inputs, sig.outputs.inputs
    assert inp.shape == (-1, 64) and inp.type == np.dtype("float64")
    assert out.shape == (-1,) and out.type == np.dtype("int64")
    conf = model.model_config
    assert conf["dataset"] == "digits"
    assert conf["input"]["width"] == 64 and conf["input"]["kind"] == "digits"

    raw = load_digits()
    n = 400
    x_raw, y = raw.data[:n], raw.target[:n]
    store = Store(str(root))
    ens = Ensemble(read_config(store), store, read_current(store))
    want = ens.predict(raw_to_features("digits", x_raw, (1, 8, 8)))
    forms = [x_raw, x_raw.astype(np.int64), raw.images[:n], pd.DataFrame(x_raw),
             pd.DataFrame({"id": np.arange(n), "label": y, "x": list(x_raw)}),
             pd.DataFrame({"x": [r.tolist() for r in x_raw]})]
    for form in forms:
        got = model.predict(form)
        assert got.dtype == np.int64 and (got == want).all()
    acc = float((want == y).mean())
    assert acc > 0.5
    # the same rows as canonical features are not what the model takes any more
    assert float((model.predict(raw_to_features("digits", x_raw, (1, 8, 8))) == y).mean()) < acc
    assert len(model.predict(x_raw[:0])) == 0

    for bad in (x_raw[:, :63], pd.DataFrame(x_raw[:5, :60]),
                pd.DataFrame({"x": list(np.zeros((3, 65)))})):
        with pytest.raises(ClulError) as e:
            model.predict(bad)
        msg = str(e.value)
        assert "\n" not in msg and "expected raw rows of 64 features" in msg, msg
