"""Text and language-model unlearning: the tokenizer (:mod:`.tokenizer`), the tiny causal
LM (:mod:`.lm`), the synthetic fictitious-people corpus (:mod:`.corpus`). The text sources
``tofu-synth:N`` and ``text:PATH`` are :mod:`clul_ray.data.text`."""
