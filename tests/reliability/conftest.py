"""A small trained root (backend local, digits), trained once per module; each test gets
its own copy to break."""

from __future__ import annotations

import shutil

import pytest
from conftest import tiny_config

from clul_ray.sisa.driver.pipeline import Pipeline


@pytest.fixture(scope="module")
def local_base(tmp_path_factory):
    root = tmp_path_factory.mktemp("local") / "root"
    Pipeline(str(root)).train(tiny_config(backend="local", epochs=2))
    return root


@pytest.fixture
def root(local_base, tmp_path):
    dst = tmp_path / "root"
    shutil.copytree(local_base, dst)
    return dst
