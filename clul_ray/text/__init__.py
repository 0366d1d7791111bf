"""Text and language-model unlearning: the tokenizer (:mod:`.tokenizer`), the tiny causal
LM (:mod:`.lm`), the synthetic fictitious-people corpus (:mod:`.corpus`) and the TOFU/MUSE
metrics as pure functions of numbers and strings (:mod:`.metrics`). The text sources
``tofu-synth:N`` and ``text:PATH`` are :mod:`clul_ray.data.text`."""
