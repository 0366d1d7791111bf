"""A deletion service on Ray Serve: predictions exact at every instant (shards holding rows
of a pending request are excluded), deletions acknowledged once recorded, retrained on warm
shard workers. ``clul-ray serve``; see :mod:`.service` and :mod:`.app`."""
