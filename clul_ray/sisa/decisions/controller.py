"""The deletion controller: pure. Given a ledger request and what storage says, the next step.

Every request that changes a root's data walks a fixed table of stages. An exact deletion::

    planned -> data_removed -> checkpoints_discarded -> retrained -> committed
             RemoveRows      DiscardCheckpoints      Retrain       Certify

An approximate one (``unlearn``) edits the affected shard models first and commits them
instead of retraining::

    planned -> unlearned -> data_removed -> checkpoints_discarded -> retrained -> committed
             EditModels   RemoveRows      DiscardCheckpoints      CommitEdited   Certify

An addition (``add``, :mod:`.grow`) writes the new rows into a new last slice of every
shard, trains that slice only, and drops the staged copy of the rows::

    planned -> data_added -> retrained -> committed
             AddRows       TrainAdded   ReleaseStaging

The ledger records a stage after its step has finished, and every step is idempotent, so a
request found in any stage but ``committed`` is resumed by running the step the table names.
One fact from storage changes the walk: a crash between committing the new version and
recording ``retrained`` leaves the version committed, so the controller then *adopts* it
(:class:`AdoptCommitted`) rather than committing a second one.

A new operation adds its kind, its rows in :data:`TRANSITIONS` and its step types; an
executor (:mod:`.steps`) runs the steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ...errors import ClulError


class Stage(StrEnum):
    PLANNED = "planned"
    UNLEARNED = "unlearned"
    DATA_ADDED = "data_added"
    DATA_REMOVED = "data_removed"
    CHECKPOINTS_DISCARDED = "checkpoints_discarded"
    # the request's version is committed (retrained, edited or added); the stored value is
    # the first name of this stage, kept so that ledgers written before read unchanged
    VERSION_COMMITTED = "retrained"
    COMMITTED = "committed"


class Kind(StrEnum):
    DELETE = "delete"    # exact: the affected shards retrain
    UNLEARN = "unlearn"  # approximate: the affected shard models are edited
    ADD = "add"          # exact: new rows in a new slice, which trains from the last one


@dataclass(frozen=True)
class EditModels:
    """Edit each affected shard's current model with an approximate method."""


@dataclass(frozen=True)
class RemoveRows:
    """Remove the request's ids from the partitions from each shard's earliest affected
    slice on, from the test split, and from the index."""


@dataclass(frozen=True)
class DiscardCheckpoints:
    """Delete every checkpoint of the affected shards from the earliest affected slice on."""


@dataclass(frozen=True)
class Retrain:
    """Retrain the affected shards from their last clean checkpoint and commit a version."""


@dataclass(frozen=True)
class CommitEdited:
    """Commit a version that serves the edited shard models."""


@dataclass(frozen=True)
class AddRows:
    """Write the staged new rows into the new slice of their shards, the test split and
    the index, and record the new slice count in the root's config."""


@dataclass(frozen=True)
class TrainAdded:
    """Train every shard's new slice from its previous checkpoint and commit a version."""


@dataclass(frozen=True)
class ReleaseStaging:
    """Delete the staged copy of the added rows (they now live in the partitions)."""


@dataclass(frozen=True)
class AdoptCommitted:
    """The request's version was committed before a crash: record it, commit nothing."""

    version: int


@dataclass(frozen=True)
class Certify:
    """Scan storage for the request's ids and write its certificate."""


Step = EditModels | RemoveRows | DiscardCheckpoints | Retrain | CommitEdited | AdoptCommitted \
    | Certify | AddRows | TrainAdded | ReleaseStaging

# (kind, stage) -> (the step to run, the stage recorded once it has finished)
TRANSITIONS: dict[tuple[Kind, Stage], tuple[Step, Stage]] = {
    (Kind.DELETE, Stage.PLANNED): (RemoveRows(), Stage.DATA_REMOVED),
    (Kind.DELETE, Stage.DATA_REMOVED): (DiscardCheckpoints(), Stage.CHECKPOINTS_DISCARDED),
    (Kind.DELETE, Stage.CHECKPOINTS_DISCARDED): (Retrain(), Stage.VERSION_COMMITTED),
    (Kind.DELETE, Stage.VERSION_COMMITTED): (Certify(), Stage.COMMITTED),
    (Kind.UNLEARN, Stage.PLANNED): (EditModels(), Stage.UNLEARNED),
    (Kind.UNLEARN, Stage.UNLEARNED): (RemoveRows(), Stage.DATA_REMOVED),
    (Kind.UNLEARN, Stage.DATA_REMOVED): (DiscardCheckpoints(), Stage.CHECKPOINTS_DISCARDED),
    (Kind.UNLEARN, Stage.CHECKPOINTS_DISCARDED): (CommitEdited(), Stage.VERSION_COMMITTED),
    (Kind.UNLEARN, Stage.VERSION_COMMITTED): (Certify(), Stage.COMMITTED),
    (Kind.ADD, Stage.PLANNED): (AddRows(), Stage.DATA_ADDED),
    (Kind.ADD, Stage.DATA_ADDED): (TrainAdded(), Stage.VERSION_COMMITTED),
    (Kind.ADD, Stage.VERSION_COMMITTED): (ReleaseStaging(), Stage.COMMITTED),
}


@dataclass(frozen=True)
class Current:
    """What storage says of the root's current version."""

    version: int | None = None
    request_id: str | None = None


def next_step(kind: Kind, stage: Stage, request_id: str, current: Current
              ) -> tuple[Step, Stage] | None:
    """The step to run next for request ``request_id`` in ``stage``, and the stage it leads
    to; None once the request is committed."""
    if stage == Stage.COMMITTED:
        return None
    if (kind, stage) not in TRANSITIONS:
        raise ClulError(f"ledger request {request_id} is in stage '{stage}', which a "
                        f"'{kind}' request never reaches")
    step, then = TRANSITIONS[(kind, stage)]
    if then == Stage.VERSION_COMMITTED and current.request_id == request_id \
            and current.version is not None:
        return AdoptCommitted(current.version), then
    return step, then


def walk(kind: Kind) -> list[tuple[Stage, Step, Stage]]:
    """The uninterrupted path of a request of ``kind``: (stage, step, next stage) rows."""
    out, stage = [], Stage.PLANNED
    while (nxt := next_step(kind, stage, "-", Current())) is not None:
        out.append((stage, *nxt))
        stage = nxt[1]
    return out
