"""The prediction replicas' pure decisions (:mod:`clul_ray.serve.voting`) and the board's
bookkeeping (:class:`clul_ray.serve.board.Board`, as a plain object): which shards may vote
given the published state and the models a replica has loaded, and when the state it holds
is current."""

from __future__ import annotations

import pytest

from clul_ray.serve import voting
from clul_ray.serve.board import Board

pytestmark = pytest.mark.pure
ROOT = "/r"


def st(models: dict[int, str], excluded=(), root=ROOT, version=1) -> dict:
    return {"root": root, "version": version, "excluded": sorted(excluded),
            "models": {str(k): v for k, v in models.items()}}


def test_voters_are_current_models_of_shards_not_excluded():
    s = st({0: "a", 1: "b", 2: "c"}, excluded=[2])
    assert voting.allowed_voters(s, ROOT, {0: "a", 1: "b", 2: "c"}) == [0, 1]
    # a model replaced by a commit does not vote until the new one is loaded
    s2 = st({0: "a2", 1: "b", 2: "c"})
    assert voting.allowed_voters(s2, ROOT, {0: "a", 1: "b", 2: "c"}) == [1, 2]
    assert voting.to_load(s2, ROOT, {0: "a", 1: "b", 2: "c"}) == [0]
    # an excluded shard is not loaded (its checkpoints may be gone)
    assert voting.to_load(st({0: "a2", 1: "b"}, excluded=[0]), ROOT, {1: "b"}) == []
    # a shard loaded but not in the state (or not trained) never votes
    assert voting.allowed_voters(st({1: "b"}), ROOT, {0: "a", 1: "b"}) == [1]


@pytest.mark.parametrize("bad", [None, {}, st({0: "a"}, root="/other"), {"root": ROOT}])
def test_no_state_or_another_roots_state_allows_nothing(bad):
    """Fail closed: an empty (restarted) board or another root's board allows no voter."""
    assert voting.allowed_voters(bad, ROOT, {0: "a"}) == []
    assert voting.to_load(bad, ROOT, {}) == []
    assert not voting.usable(bad, ROOT)


def test_newly_excluded_voters_are_dropped():
    loaded = {0: "a", 1: "b", 2: "c"}
    voters = voting.allowed_voters(st({0: "a", 1: "b", 2: "c"}), ROOT, loaded)
    assert voters == [0, 1, 2]
    # the epoch moved: a reader computes again with the voters the newer state allows
    later = st({0: "a", 1: "b", 2: "c"}, excluded=[1])
    assert voting.allowed_voters(later, ROOT, loaded) == [0, 2]
    assert voting.allowed_voters(st({0: "x", 1: "b", 2: "c"}), ROOT, loaded) == [1, 2]


def test_epochs_compare_incarnation_and_number():
    assert voting.same_epoch(("i", 3), ("i", 3)) and voting.same_epoch(["i", 3], ("i", 3))
    assert not voting.same_epoch(("i", 3), ("i", 4))
    assert not voting.same_epoch(("i", 3), ("j", 3)), "a restarted board is another epoch"
    assert not voting.same_epoch(None, ("i", 0))


def test_board_keeps_the_latest_state_and_moves_only_on_change():
    b = Board()
    g1 = b.claim()
    tok0 = b.get(None)[0]
    t1 = b.publish((g1, 1), st({0: "a"}))
    assert t1 != tok0 and b.get(t1) is None, "a current token gets nothing back"
    assert b.publish((g1, 2), st({0: "a"})) == t1, "an unchanged state keeps the epoch"
    t3 = b.publish((g1, 4), st({0: "a"}, excluded=[0]))
    assert t3[1] == t1[1] + 1
    # a publish that raced and arrives late never puts an older state back
    assert b.publish((g1, 3), st({0: "a"})) == t3 and b.get(None)[1]["excluded"] == [0]
    # a restarted writer claims a later generation: its first state wins
    g2 = b.claim()
    assert g2 > g1
    t4 = b.publish((g2, 1), st({0: "b"}))
    assert b.get(t3) == (t4, st({0: "b"}))
    # a board restarted by Ray: a new incarnation, no state (readers fail closed)
    fresh = Board()
    tok, state = fresh.get(t4)
    assert state is None and not voting.same_epoch(t4, tok)


def test_serve_refuses_zero_replicas_before_touching_anything(tmp_path):
    from typer.testing import CliRunner

    from clul_ray.cli import app

    res = CliRunner().invoke(app, ["serve", "--root", str(tmp_path / "r"), "--replicas", "0"])
    assert res.exit_code == 2 and "--replicas must be at least 1, got 0" in res.output
    assert not (tmp_path / "r").exists()
