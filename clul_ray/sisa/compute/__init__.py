"""Where models are computed: one slice step (:mod:`.trainer`), the executors that run
slice steps in this process, as Ray tasks or Ray Train trainers (:mod:`.executor`), the
partition writers (:mod:`.partitioning`), evaluation (:mod:`.evaluation`), the ensemble
(:mod:`.ensemble`), approximate shard edits (:mod:`.approximate`), and the one decision of
where a command's work runs (:mod:`.site`). The only SISA layer that imports Ray."""
