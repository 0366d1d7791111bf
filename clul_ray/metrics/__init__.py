"""Unlearning metrics as pure numpy / scikit-learn functions on probability arrays."""

from .accuracy import accuracy, class_recall, classification_scores, unlearning_accuracy
from .cost import speedup
from .divergence import js_rows, kl_rows, mean_kl, zrf
from .evaluate import METRICS, Labels, Outputs, evaluate
from .mia import loss_mia, mia_efficacy, sample_cross_entropy, true_class_confidence

__all__ = ["METRICS", "Labels", "Outputs", "accuracy", "class_recall", "classification_scores",
           "evaluate", "js_rows", "kl_rows", "loss_mia", "mean_kl", "mia_efficacy",
           "sample_cross_entropy", "speedup", "true_class_confidence", "unlearning_accuracy",
           "zrf"]
