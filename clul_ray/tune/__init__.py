"""Ray Tune sweeps of unlearning strengths, scored by the gap to the retrained model.

:mod:`.space` (search spaces and their YAML overrides), :mod:`.objective` (the score and
the Pareto front, pure), :mod:`.trial` (the shared reference and the trial function),
:mod:`.sweep` (a sweep of methods), :mod:`.stream` (a sweep of a continual strategy),
:mod:`.tuner` (the Tuner and the once-per-seed tasks both run), :mod:`.outputs`
(trials.csv, best.md/.yaml, pareto.png) and :mod:`.record` (MLflow).
"""
