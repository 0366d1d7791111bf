"""Where each artefact lives under a storage root: one path helper per artefact (pure).

::

    config.json                            the pipeline config
    data/train/shard=K/slice=R/*.parquet   training rows
    data/test/*.parquet                    the held-out split (by id hash)
    index/*.parquet                        id -> (shard, slice)
    checkpoints/shard=K/slice=R/KEY.pt     model + optimizer + RNG state after slice R
    unlearned/REQUEST/shard=K.pt           a shard model edited by approximate unlearning
    state.json                             the current model version
    versions/vNNNNNN.json                  every committed model version
    ledger/NNNNNN-XXXXXXXX.json            deletion requests and their stages
    certificates/REQUEST.json              what a committed deletion removed, and its scan
    lineage/vNNNNNN.json                   a version's config and per-shard data digests
    cache/predictions/shard=K/DIGEST.parquet  a shard model's test-split probabilities
    lock.json                              the one writer's lock
    tokenizer.json                         a text root's learned tokenizer (none for bytes)
    mlflow.db, mlartifacts/                the MLflow lineage (default store, local roots)
    feature/DIGEST16/transform.json        a fitted feature-unlearning transform
    feature/versions/vNNNNNN.json          each feature-unlearn run: transform, data, t, digests
"""

from __future__ import annotations

CONFIG = "config.json"
STATE = "state.json"
LOCK = "lock.json"
TRAIN = "data/train"
TEST = "data/test"
INDEX = "index"
CHECKPOINTS = "checkpoints"
UNLEARNED = "unlearned"
VERSIONS = "versions"
LEDGER = "ledger"
CERTIFICATES = "certificates"
NOTES = "lineage"
STAGING = "staging"
PREDICTIONS = "cache/predictions"
TOKENIZER = "tokenizer.json"


def slice_dir(shard: int, slc: int) -> str:
    return f"{TRAIN}/shard={shard}/slice={slc}"


def slice_of(path: str) -> tuple[int, int] | None:
    """(shard, slice) of a file under a :func:`slice_dir`, else None."""
    parts = path.removeprefix(TRAIN + "/").split("/")
    if not path.startswith(TRAIN + "/") or len(parts) < 3 \
            or not parts[0].startswith("shard=") or not parts[1].startswith("slice="):
        return None
    try:
        return int(parts[0][6:]), int(parts[1][6:])
    except ValueError:
        return None


def shard_dir(shard: int) -> str:
    return f"{TRAIN}/shard={shard}"


def checkpoint_dir(shard: int | None = None) -> str:
    return CHECKPOINTS if shard is None else f"{CHECKPOINTS}/shard={shard}"


def checkpoint_path(shard: int, slc: int, key: str) -> str:
    return f"{CHECKPOINTS}/shard={shard}/slice={slc}/{key}.pt"


def checkpoint_slice(path: str) -> int:
    """The slice of a path made by :func:`checkpoint_path`."""
    return int(path.split("/")[2].split("=")[1])


def artifact_path(request_id: str, shard: int) -> str:
    return f"{UNLEARNED}/{request_id}/shard={shard}.pt"


def version_path(version: int) -> str:
    return f"{VERSIONS}/v{version:06d}.json"


def ledger_path(request_id: str) -> str:
    return f"{LEDGER}/{request_id}.json"


def certificate_path(request_id: str) -> str:
    return f"{CERTIFICATES}/{request_id}.json"


def note_path(version: int) -> str:
    return f"{NOTES}/v{version:06d}.json"


def prediction_path(shard: int, model_sha256: str) -> str:
    """The cached test-split predictions of the shard model with this parameter digest."""
    return f"{PREDICTIONS}/shard={shard}/{model_sha256}.parquet"


def prediction_of(path: str) -> tuple[int, str] | None:
    """(shard, model digest) of a path made by :func:`prediction_path`, else None."""
    parts = path.removeprefix(PREDICTIONS + "/").split("/")
    if len(parts) != 2 or not parts[0].startswith("shard=") \
            or not parts[1].endswith(".parquet") or not parts[0][6:].isdigit():
        return None
    return int(parts[0][6:]), parts[1].removesuffix(".parquet")


# ---- feature unlearning (clul_ray/feature) ------------------------------------------------
FEATURE = "feature"
FEATURE_VERSIONS = "feature/versions"


def feature_transform_path(digest: str) -> str:
    """A fitted feature transform, by the first 16 hex of its digest."""
    return f"{FEATURE}/{digest[:16]}/transform.json"


def feature_version_path(version: int) -> str:
    return f"{FEATURE_VERSIONS}/v{version:06d}.json"
