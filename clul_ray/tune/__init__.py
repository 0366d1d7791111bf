"""Ray Tune sweeps of unlearning strengths, scored by the gap to the retrained model.

:mod:`.space` (search spaces and their YAML overrides), :mod:`.objective` (the score and
the Pareto front, pure), :mod:`.trial` (the shared reference and the trial function),
:mod:`.sweep` (the Tuner), :mod:`.outputs` (trials.csv, best.md/.yaml, pareto.png) and
:mod:`.record` (MLflow).
"""
