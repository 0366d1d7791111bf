"""The deletion service's pure decisions (:mod:`clul_ray.serve.state`): the service phase of
every ledger stage, and a request's timeline."""

from __future__ import annotations

import json

import pytest

from clul_ray.serve import state
from clul_ray.sisa.decisions.controller import TRANSITIONS, Kind, Stage

pytestmark = pytest.mark.pure


def history(kind: Kind) -> list[dict]:
    """The stages a request of ``kind`` passes through, one second apart."""
    stages, stage = [Stage.PLANNED], Stage.PLANNED
    while (kind, stage) in TRANSITIONS:
        stage = TRANSITIONS[(kind, stage)][1]
        stages.append(stage)
    return [{"state": s.value, "time": float(t)} for t, s in enumerate(stages)]


@pytest.mark.parametrize("kind", list(Kind))
def test_every_request_kind_has_a_timeline(kind):
    """A request the service did not record (an unlearn, an addition) is still described:
    its phases in order, from recorded to committed, as JSON strings."""
    got = state.timeline(history(kind), None)
    phases = [p["phase"] for p in got]
    order = [p.value for p in state.Phase]
    assert phases[0] == "recorded" and phases[-1] == "committed"
    assert phases == sorted(set(phases), key=order.index)
    if kind == Kind.DELETE:
        assert phases == order
    assert json.loads(json.dumps(got)) == got


def test_phases_are_typed():
    assert state.phase(Stage.COMMITTED) is state.Phase.COMMITTED
    assert {state.phase(s) for s in Stage} <= set(state.Phase)
    assert state.phase(Stage.PLANNED) is state.Phase.EXCLUDED
    assert [p.value for p in state.Phase] == ["recorded", "excluded", "retraining",
                                              "certifying", "committed"]
