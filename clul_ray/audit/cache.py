"""Reference models' scores, kept by content key so that a second audit of the scenario
(another method, another N) trains none of the references it shares with the first.

The key of one reference model hashes everything its score depends on: the rows (ids,
features and labels of D_r, D_f and D_t), the model and its arguments, the training recipe,
the seed, for a SISA reference its shards × slices and placement seed, and the versions of
clul_ray and torch. A file is written whole (temporary name, then rename), so a reader never
sees half of one; an unreadable file is a miss and is trained again.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..hashing import sha256_json
from ..unlearn.compare import Data
from .jobs import ModelScore


def data_digest(data: Data) -> str:
    h = hashlib.sha256()
    for split in (data.retain, data.forget, data.test):
        for a in (split.ids, split.x.numpy(), split.y.numpy()):
            if a is not None:
                h.update(np.ascontiguousarray(a).tobytes())
                h.update(str(a.shape).encode())
    return h.hexdigest()


def reference_key(digest: str, setup: dict[str, Any], seed: int) -> str:
    """``setup``: model, model args, recipe (and the SISA shape) — everything but the seed."""
    return sha256_json({"data": digest, **setup, "seed": int(seed), "clul_ray": __version__,
                        "torch": torch.__version__})


class ScoreCache:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, key: str) -> ModelScore | None:
        p = self.path(key)
        try:
            with np.load(p) as a:
                return ModelScore.from_arrays(a)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None

    def put(self, key: str, score: ModelScore) -> None:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **score.to_arrays())
        os.replace(tmp, p)
