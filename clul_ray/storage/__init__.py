"""A storage root: files through ``pyarrow.fs`` (:mod:`.store`), the caching store of the
long-lived service (:mod:`.cache`), the name of every artefact (:mod:`.layout`) and the
one writer's lock (:mod:`.lock`). Knows nothing of SISA; imports neither Ray nor torch."""
