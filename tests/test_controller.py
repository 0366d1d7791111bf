"""The deletion controller walked without Ray or storage: the stage table, resumes from
every stage, adopting a version committed before a crash, and refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clul_ray.errors import ClulError
from clul_ray.sisa.decisions.controller import (
    TRANSITIONS,
    AddRows,
    AdoptCommitted,
    Certify,
    CommitEdited,
    Current,
    DiscardCheckpoints,
    EditModels,
    Kind,
    ReleaseStaging,
    RemoveRows,
    Retrain,
    Stage,
    TrainAdded,
    next_step,
    walk,
)

pytestmark = pytest.mark.pure


def test_an_exact_deletion_walks_remove_discard_retrain_certify():
    assert [(a, type(s), b) for a, s, b in walk(Kind.DELETE)] == [
        (Stage.PLANNED, RemoveRows, Stage.DATA_REMOVED),
        (Stage.DATA_REMOVED, DiscardCheckpoints, Stage.CHECKPOINTS_DISCARDED),
        (Stage.CHECKPOINTS_DISCARDED, Retrain, Stage.VERSION_COMMITTED),
        (Stage.VERSION_COMMITTED, Certify, Stage.COMMITTED)]


def test_an_approximate_request_edits_first_and_commits_the_edited_models():
    assert [(a, type(s), b) for a, s, b in walk(Kind.UNLEARN)] == [
        (Stage.PLANNED, EditModels, Stage.UNLEARNED),
        (Stage.UNLEARNED, RemoveRows, Stage.DATA_REMOVED),
        (Stage.DATA_REMOVED, DiscardCheckpoints, Stage.CHECKPOINTS_DISCARDED),
        (Stage.CHECKPOINTS_DISCARDED, CommitEdited, Stage.VERSION_COMMITTED),
        (Stage.VERSION_COMMITTED, Certify, Stage.COMMITTED)]


def test_an_addition_writes_the_rows_trains_the_new_slice_and_releases_the_staging():
    assert [(a, type(s), b) for a, s, b in walk(Kind.ADD)] == [
        (Stage.PLANNED, AddRows, Stage.DATA_ADDED),
        (Stage.DATA_ADDED, TrainAdded, Stage.VERSION_COMMITTED),
        (Stage.VERSION_COMMITTED, ReleaseStaging, Stage.COMMITTED)]


@pytest.mark.parametrize("kind", list(Kind))
def test_a_request_resumed_from_any_stage_finishes_the_same_walk(kind):
    """The ledger records a stage after its step: resuming from stage S runs exactly the
    rest of the uninterrupted walk."""
    full = walk(kind)
    for i, (stage, _, _) in enumerate(full):
        rest, s = [], stage
        while (nxt := next_step(kind, s, "r1", Current(4, "r0"))) is not None:
            rest.append((s, *nxt))
            s = nxt[1]
        assert rest == full[i:]
        assert s == Stage.COMMITTED


@pytest.mark.parametrize("kind", list(Kind))
def test_a_version_committed_before_a_crash_is_adopted_not_committed_again(kind):
    """Storage's current version already names the request: the step that would commit a
    version records that one instead."""
    before = next(a for a, _, b in walk(kind) if b == Stage.VERSION_COMMITTED)
    step, then = next_step(kind, before, "r1", Current(7, "r1"))
    assert step == AdoptCommitted(7) and then == Stage.VERSION_COMMITTED
    # another request's version, or none: commit as usual
    commits = (Retrain(), CommitEdited(), TrainAdded())
    assert next_step(kind, before, "r1", Current(7, "r0"))[0] in commits
    assert next_step(kind, before, "r1", Current())[0] in commits


def test_a_committed_request_has_no_next_step():
    for kind in Kind:
        assert next_step(kind, Stage.COMMITTED, "r1", Current(3, "r1")) is None


def test_a_stage_the_kind_never_reaches_is_refused():
    with pytest.raises(ClulError, match="stage 'unlearned', which a 'delete' request never"):
        next_step(Kind.DELETE, Stage.UNLEARNED, "000003-abcd", Current())


def test_every_stage_but_committed_has_a_row_for_each_kind_that_reaches_it():
    reached = {(k, a) for k in Kind for a, _, _ in walk(k)}
    assert reached == set(TRANSITIONS)


def test_pure_modules_import_without_ray():
    """Planning, placement, the controller, metrics and losses never import Ray; the pure
    decisions and the storage layer import neither Ray nor torch (transitively)."""
    code = ("import sys\n"
            "import clul_ray.sisa.decisions.controller, clul_ray.sisa.decisions.plan\n"
            "import clul_ray.sisa.decisions.next_version, clul_ray.sisa.decisions.aggregate\n"
            "import clul_ray.storage.store, clul_ray.storage.cache, clul_ray.storage.lock\n"
            "import clul_ray.data.partition\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch'))\n"
            "assert not bad, bad\n"
            "import clul_ray.metrics, clul_ray.unlearn.losses, clul_ray.config\n"
            "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stage_values_stay_what_ledgers_store():
    """Renaming a stage never changes what a ledger holds: records written before read."""
    assert {s.name: s.value for s in Stage} == {
        "PLANNED": "planned", "UNLEARNED": "unlearned", "DATA_ADDED": "data_added",
        "DATA_REMOVED": "data_removed", "CHECKPOINTS_DISCARDED": "checkpoints_discarded",
        "VERSION_COMMITTED": "retrained", "COMMITTED": "committed"}
    assert Stage("retrained") is Stage.VERSION_COMMITTED
