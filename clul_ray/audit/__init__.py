"""The NeurIPS 2023 unlearning challenge's forgetting measure (ε per forget example)."""
