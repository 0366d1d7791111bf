"""Text and language-model unlearning: the tokenizer (:mod:`.tokenizer`), the tiny causal
LM (:mod:`.lm`), text sources (:mod:`.sources`: ``tofu-synth:N`` and ``text:PATH``), and
the TOFU / MUSE metrics as pure functions of log-likelihoods and strings (:mod:`.metrics`)."""
