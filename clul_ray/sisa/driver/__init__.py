"""The request path: the pipeline facade (:mod:`.pipeline`) that holds a root's lock and
composes the layers below, the controller's steps against storage (:mod:`.steps`), growth
(:mod:`.grow`), repair (:mod:`.repair`), status (:mod:`.status`), observers
(:mod:`.observers`) and the command summaries (:mod:`.summary`)."""
