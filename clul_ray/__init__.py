"""clul_ray: exact (SISA) and approximate unlearning with continual learning, on Ray."""

from .errors import ClulError

__version__ = "0.1.0"


def __getattr__(name: str):
    """``register_model``, ``PipelineConfig`` and ``make_config`` on first use: importing
    the package must not import torch (Ray workers that only partition data would pay for
    it), nor pydantic and the data layer (the command line's entry point loads them with
    the garbage collector off)."""
    if name == "register_model":
        from .models import register_model

        return register_model
    if name in ("PipelineConfig", "make_config"):
        from . import config

        return getattr(config, name)
    raise AttributeError(f"module 'clul_ray' has no attribute {name!r}")


def Pipeline(root: str, **kwargs):  # noqa: N802 - a lazy front door, reads like the class
    """The SISA pipeline on a storage root, with lineage (:func:`clul_ray.api.open_pipeline`)."""
    from .api import open_pipeline

    return open_pipeline(root, **kwargs)


__all__ = ["ClulError", "Pipeline", "PipelineConfig", "make_config", "register_model"]
