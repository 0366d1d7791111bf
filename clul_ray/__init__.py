"""clul_ray: exact (SISA) and approximate unlearning with continual learning, on Ray."""

from .config import PipelineConfig, make_config
from .errors import ClulError
from .models import register_model

__version__ = "0.1.0"


def Pipeline(root: str, **kwargs):  # noqa: N802 - a lazy front door, reads like the class
    """The SISA pipeline on a storage root, with lineage (:func:`clul_ray.api.open_pipeline`)."""
    from .api import open_pipeline

    return open_pipeline(root, **kwargs)


__all__ = ["ClulError", "Pipeline", "PipelineConfig", "make_config", "register_model"]
