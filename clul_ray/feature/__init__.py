"""Feature unlearning: map every group's conditional distribution L(X | Z=z) onto the
Wasserstein-2 barycenter of the groups (ALGORITHMS.md §6), so that X̂ says as little as
possible about a sensitive column Z while moving X as little as possible.

Pure modules: :mod:`.fit` (streaming statistics and the barycenter maths),
:mod:`.transform` (the fitted transform: apply, save, digest), :mod:`.report` (utility and
independence), :mod:`.synthetic` (the ``synthetic-fair:N`` generator). The Ray Data edge is
:mod:`.apply`; MLflow is :mod:`.record`. This package imports nothing of ``data``
(``data.sources`` imports :mod:`.synthetic`)."""
