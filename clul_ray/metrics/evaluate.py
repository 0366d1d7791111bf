"""All the metrics of one model from its probability outputs on D_r, D_f and D_t."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .accuracy import accuracy, classification_scores, unlearning_accuracy
from .divergence import mean_kl, zrf
from .mia import loss_mia, mia_efficacy, sample_cross_entropy, true_class_confidence


@dataclass
class Outputs:
    """Softmax outputs (n, C) of one model on the retain, forget and test rows."""

    retain: np.ndarray
    forget: np.ndarray
    test: np.ndarray


@dataclass
class Labels:
    retain: np.ndarray
    forget: np.ndarray
    test: np.ndarray


METRICS = ("RA", "FA", "TA", "UA", "MIA", "MIA_loss", "ZRF", "KL", "KL_test", "TP", "TR",
           "TF1", "FF1", "RF1")


def evaluate(out: Outputs, labels: Labels, retrain: Outputs | None = None,
             incompetent_forget: np.ndarray | None = None, seed: int = 0) -> dict[str, float]:
    """RA, FA, TA, UA = 1 - FA, MIA (MIA-Efficacy), MIA_loss, ZRF (needs the random model's
    outputs on D_f), KL and KL_test (mean KL(p_retrain || p_model) on D_f and D_t); TP, TR,
    TF1: macro precision, recall and F1 on D_t; FF1 and RF1: macro F1 on D_f and D_r
    (:func:`~.accuracy.classification_scores`)."""
    fa = accuracy(out.forget, labels.forget)
    nan = float("nan")
    test = classification_scores(out.test, labels.test)
    return {
        "RA": accuracy(out.retain, labels.retain),
        "FA": fa,
        "TA": accuracy(out.test, labels.test),
        "UA": unlearning_accuracy(fa),
        "MIA": mia_efficacy(true_class_confidence(out.retain, labels.retain),
                            true_class_confidence(out.test, labels.test),
                            true_class_confidence(out.forget, labels.forget), seed),
        "MIA_loss": loss_mia(sample_cross_entropy(out.forget, labels.forget),
                             sample_cross_entropy(out.test, labels.test), seed),
        "ZRF": nan if incompetent_forget is None else zrf(out.forget, incompetent_forget),
        "KL": nan if retrain is None else mean_kl(retrain.forget, out.forget),
        "KL_test": nan if retrain is None else mean_kl(retrain.test, out.test),
        "TP": test["precision"],
        "TR": test["recall"],
        "TF1": test["F1"],
        "FF1": classification_scores(out.forget, labels.forget)["F1"],
        "RF1": classification_scores(out.retain, labels.retain)["F1"],
    }
