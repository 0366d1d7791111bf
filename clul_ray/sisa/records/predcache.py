"""Per-shard predictions on the test split, cached by model digest.

A commit retrains only the shards a request touches, so the kept shards' predictions on
the test split are what they were: each shard model's class probabilities are stored under
``cache/predictions/shard=K/<model_sha256>.parquet`` (``id``, ``proba``) and evaluation
predicts only with the shards whose model has none that covers every current test id.

The cache is data derived from test rows, so it follows them: a request's ids are purged
from every file (:func:`purge_ids`, in ``RemoveRows``), a file of no served model is
deleted at commit (:func:`drop_stale`), and the residue scan reads it (``certify``). Each
file records its model digest and a digest of its content; a file that is unreadable or
does not match is a miss (predicted again and rewritten), never an error.

The planning and merging are pure functions of arrays (:func:`plan_predictions`,
:func:`align`, :func:`merge`, :func:`score_probs`, :func:`classification_metrics`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ...errors import ClulError
from ...metrics.accuracy import classification_scores
from ...storage import layout
from ...storage.columns import from_numpy, list_values, to_numpy
from ...storage.store import Store
from ..decisions.aggregate import aggregate, ensemble_token_logprobs, perplexity, vote
from .version import Metrics, ModelVersion

MODEL_KEY = b"clul_model_sha256"
CONTENT_KEY = b"clul_content_sha256"


@dataclass
class ShardPredictions:
    """One shard model's class probabilities: ``ids`` (n,), ``proba`` (n, classes)."""

    ids: np.ndarray
    proba: np.ndarray


# ---- pure -------------------------------------------------------------------------------
def content_digest(ids: np.ndarray, proba: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(ids, np.int64), np.ascontiguousarray(proba, np.float32)):
        h.update(str(a.shape).encode())
        h.update(a)  # the contiguous array itself, not a copy of its bytes
    return h.hexdigest()


def align(p: ShardPredictions, test_ids: np.ndarray) -> np.ndarray | None:
    """``p``'s probabilities in the order of ``test_ids``, or None when ``p`` lacks one."""
    if len(p.ids) == len(test_ids) and np.array_equal(p.ids, test_ids):
        return p.proba  # the usual case (stored in the test split's order): no random gather
    order = np.argsort(p.ids, kind="stable")
    have = p.ids[order]
    pos = np.searchsorted(have, test_ids)
    if len(test_ids) and (len(have) == 0 or pos.max(initial=0) >= len(have)):
        return None
    if not (have[pos] == test_ids).all():
        return None
    return p.proba[order[pos]]


def plan_predictions(shards: list[int], cached: dict[int, ShardPredictions],
                     test_ids: np.ndarray) -> list[int]:
    """The shards to predict: those without a cached prediction covering every test id."""
    return [k for k in shards if k not in cached or align(cached[k], test_ids) is None]


def merge(shards: list[int], cached: dict[int, ShardPredictions],
          fresh: dict[int, ShardPredictions], test_ids: np.ndarray) -> np.ndarray:
    """(shards, n, classes) probabilities in the order of ``test_ids``: a fresh prediction
    where there is one, else the cached one."""
    out = []
    for k in shards:
        a = align(fresh[k] if k in fresh else cached[k], test_ids)
        if a is None:
            raise ValueError(f"the predictions of shard {k} lack test ids")
        out.append(a)
    return np.stack(out)


def score_probs(labels: np.ndarray, probs: np.ndarray, shards: list[int],
                method: str, task: str = "classify") -> Metrics:
    """Ensemble and per-shard accuracy; the same numbers as ``evaluation.score`` of
    ``Ensemble.predict_table`` rows with these probabilities. A language model's
    (``task`` ``lm``: ``probs`` are each shard's probabilities of the true next tokens)
    are perplexities: the ensemble's, of the mean of the shards' distributions."""
    if not shards:
        return Metrics(test_samples=len(labels))
    if task == "lm":
        return Metrics(
            test_samples=len(labels),
            ensemble_perplexity=perplexity(ensemble_token_logprobs(probs)),
            shard_perplexity={str(k): perplexity(np.log(probs[i].astype(np.float64)))
                              for i, k in enumerate(shards)})
    each = probs.argmax(axis=2)  # (shards, n): each shard's classes, found once
    pred = (vote(each, probs.shape[2]) if method == "vote" else aggregate(probs, method)
            ).astype(np.int64)
    return classification_metrics(pred, labels, {
        str(k): float((each[i] == labels).mean()) for i, k in enumerate(shards)})


def classification_metrics(pred: np.ndarray, labels: np.ndarray,
                           shard_accuracy: dict[str, float]) -> Metrics:
    """The ensemble's accuracy and macro precision / recall / F1 from its predicted classes,
    beside the shards' accuracies."""
    s = classification_scores(pred, labels)
    return Metrics(ensemble_accuracy=float((pred == labels).mean()), test_samples=len(labels),
                   ensemble_precision=s["precision"], ensemble_recall=s["recall"],
                   ensemble_f1=s["F1"], shard_accuracy=shard_accuracy)


def without(p: ShardPredictions, ids: np.ndarray) -> ShardPredictions | None:
    """``p`` without ``ids``; None when it holds none of them."""
    keep = ~np.isin(p.ids, ids)
    return None if keep.all() else ShardPredictions(p.ids[keep], p.proba[keep])


# ---- storage ----------------------------------------------------------------------------
def to_table(p: ShardPredictions, model_sha256: str) -> pa.Table:
    n, c = p.proba.shape
    proba = pa.FixedSizeListArray.from_arrays(
        from_numpy(np.ascontiguousarray(p.proba, np.float32).reshape(-1)), max(1, c))
    t = pa.Table.from_arrays([from_numpy(np.asarray(p.ids, np.int64)), proba],
                             names=["id", "proba"])
    return t.replace_schema_metadata({MODEL_KEY: model_sha256.encode(),
                                      CONTENT_KEY: content_digest(p.ids, p.proba).encode()})


def from_table(t: pa.Table, model_sha256: str, classes: int) -> ShardPredictions | None:
    """The predictions of a stored table, or None when it is not what it records."""
    meta = t.schema.metadata or {}
    if meta.get(MODEL_KEY) != model_sha256.encode() or t.column_names != ["id", "proba"]:
        return None
    col = t.column("proba").combine_chunks()
    if not pa.types.is_fixed_size_list(col.type) or col.type.list_size != classes:
        return None
    ids = np.asarray(to_numpy(t.column("id")), np.int64)  # (copies only when it must)
    proba = np.asarray(list_values(col), np.float32)
    proba = proba.reshape(len(ids), classes)
    if meta.get(CONTENT_KEY) != content_digest(ids, proba).encode():
        return None
    return ShardPredictions(ids, proba)


def read_cached(store: Store, shard: int, model_sha256: str,
                classes: int) -> ShardPredictions | None:
    """The cached predictions of a shard model; None when absent, unreadable or not what
    the file records (a miss, never an error)."""
    rel = layout.prediction_path(shard, model_sha256)

    def read() -> ShardPredictions | None:
        try:
            if not model_sha256 or not store.exists(rel):
                return None
            return from_table(store.read_parquet(rel), model_sha256, classes)
        except (ClulError, pa.ArrowException, OSError, ValueError):
            return None

    return store.memo((rel,), f"predictions:{classes}", read)


def write_cached(store: Store, shard: int, model_sha256: str, p: ShardPredictions) -> None:
    if model_sha256:
        store.write_table(layout.prediction_path(shard, model_sha256),
                          to_table(p, model_sha256))


def cache_files(store: Store) -> list[tuple[str, int | None, str | None]]:
    """(path, shard, model digest) of every file under the cache (None, None: foreign)."""
    out = []
    for f in store.list_files(layout.PREDICTIONS):
        of = layout.prediction_of(f)
        out.append((f, *(of if of else (None, None))))
    return out


def served(version: ModelVersion | None) -> set[tuple[int, str]]:
    return set() if version is None else {(s.shard, s.model_sha256)
                                          for s in version.trained_shards()}


def drop_stale(store: Store, version: ModelVersion) -> list[str]:
    """Delete every cache file of a model ``version`` does not serve (at commit): the
    predictions of a superseded model carry its training rows' influence."""
    keep = served(version)
    gone = []
    for f, shard, digest in cache_files(store):
        if (shard, digest) not in keep:
            store.delete(f)
            gone.append(f)
    return gone


def purge_ids(store: Store, ids: np.ndarray) -> int:
    """Rewrite every cache file without ``ids`` (idempotent); a file that cannot be read
    back is deleted: it may hold them, and it is only a cache."""
    ids = np.asarray(ids, np.int64)
    removed = 0
    for f, shard, digest in cache_files(store):
        try:
            t = store.read_parquet(f)
            p = from_table(t, digest or "", t.column("proba").type.list_size)
        except (ClulError, pa.ArrowException, OSError, ValueError, KeyError, AttributeError):
            p = None
        if p is None:
            store.delete(f)
            continue
        left = without(p, ids)
        if left is not None:
            removed += len(p.ids) - len(left.ids)
            write_cached(store, shard, digest, left)
    return removed
