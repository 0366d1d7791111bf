"""What a root records: model versions and the root's stored config (:mod:`.version`), the
request ledger (:mod:`.ledger`), slice checkpoints (:mod:`.checkpoint`), cached test
predictions (:mod:`.predcache`), the commit (:mod:`.commit`) and the no-residue
certificate (:mod:`.certify`). Reads and writes through :mod:`clul_ray.storage`; no Ray."""
