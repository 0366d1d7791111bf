"""torchvision's image sets (``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist``) read
from a local data folder as canonical rows: train and test parts one after the other, ids
from 0."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..errors import ClulError
from .sources import TORCHVISION, DataSource, canonical, raw_to_features


def open_torchvision(spec: str, kind: str, data_dir: str | None, download: bool) -> DataSource:
    from torchvision import datasets

    cls_name, classes = TORCHVISION[kind]
    if not data_dir:
        raise ClulError(f"{kind} is read from a local folder: pass --data-dir DIR "
                        "(and --download to fetch it there)")
    cls = getattr(datasets, cls_name)
    parts = []
    offset = 0
    for train in (True, False):
        try:
            ds = cls(root=data_dir, train=train, download=download)
        except RuntimeError:
            raise ClulError(f"{kind} files not found under {data_dir}; "
                            "pass --download to fetch them") from None
        except OSError as e:
            raise ClulError(f"could not download {kind} into {data_dir}: {e}") from None
        data = np.asarray(ds.data)  # (n, H, W) or (n, H, W, C), uint8
        shape = (1, *data.shape[1:]) if data.ndim == 3 else (data.shape[3], *data.shape[1:3])
        shape = tuple(int(s) for s in shape)
        x = raw_to_features(kind, data, shape)
        ids = np.arange(offset, offset + len(data), dtype=np.int64)
        offset += len(data)
        parts.append(canonical(ids, np.asarray(ds.targets), x))
    return DataSource(spec, kind, classes, shape, table=pa.concat_tables(parts))
