"""clul_ray: exact (SISA) and approximate unlearning with continual learning, on Ray."""

from .config import PipelineConfig, make_config
from .errors import ClulError
from .models import register_model

__version__ = "0.1.0"


def Pipeline(root: str, **kwargs):  # noqa: N802 - a lazy re-export of the class
    """The SISA pipeline on a storage root (see :class:`clul_ray.sisa.pipeline.Pipeline`)."""
    from .sisa.pipeline import Pipeline as _Pipeline

    return _Pipeline(root, **kwargs)


__all__ = ["ClulError", "Pipeline", "PipelineConfig", "make_config", "register_model"]
