"""The deletion service's Ray metrics: rows predicted, requests recorded, the seconds
from a request's receipt to its exclusion and to its commit."""

from __future__ import annotations


class Metrics:
    """Ray metrics of the service (exported with Ray's metrics; no-ops when they fail)."""

    def __init__(self):
        try:
            from ray.util.metrics import Counter, Histogram

            self.predictions = Counter("clul_ray_predict_rows", "rows predicted")
            self.requests = Counter("clul_ray_delete_requests", "deletion requests recorded")
            self.exclusion = Histogram(
                "clul_ray_exclusion_seconds", "receipt of /delete to exclusion",
                boundaries=[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5])
            self.commit = Histogram(
                "clul_ray_commit_seconds", "request recorded to committed",
                boundaries=[0.5, 1, 2, 5, 10, 30, 60, 300])
        except Exception:  # metrics are an aid, never a failure
            self.predictions = self.requests = self.exclusion = self.commit = None

    @staticmethod
    def _do(metric, method: str, value: float) -> None:
        if metric is not None:
            try:
                getattr(metric, method)(value)
            except Exception:
                pass

    def predicted(self, n: int) -> None:
        self._do(self.predictions, "inc", n)

    def recorded(self, seconds: float) -> None:
        self._do(self.requests, "inc", 1)
        self._do(self.exclusion, "observe", seconds)

    def committed(self, seconds: float) -> None:
        self._do(self.commit, "observe", seconds)
