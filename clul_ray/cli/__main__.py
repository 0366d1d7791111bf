"""``python -m clul_ray.cli``."""

from . import main

main()
