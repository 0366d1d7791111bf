"""Pure decisions of SISA: the epoch schedule, checkpoint keys and slice-step plans
(:mod:`.plan`), the request controller's transition table (:mod:`.controller`), the
aggregation of shard votes (:mod:`.aggregate`) and the next model version
(:mod:`.next_version`). Imports neither Ray nor torch, reads and writes nothing."""
