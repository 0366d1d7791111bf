"""Dataset sources (-> Arrow rows with a stable int64 `id`) and the partition plan."""

from .partition import assign, is_test
from .sources import DataSource, open_source

__all__ = ["DataSource", "assign", "is_test", "open_source"]
