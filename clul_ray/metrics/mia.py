"""Membership inference metrics.

- :func:`mia_efficacy` (SalUn / l1-sparse convention): features = true-class confidence
  p_y(x); an SVC(C=3, rbf, gamma="auto") is trained with members = min(|D_t|, |D_r|)
  random rows of D_r (label 1) and non-members = D_t (label 0); the score is the fraction
  of D_f predicted non-member. Higher = the forget rows look unseen. Compare with retrain's value.
- :func:`loss_mia` (NeurIPS 2023 challenge starting kit): per-sample cross-entropy on D_f
  (label 1) vs D_t (label 0), balanced by subsampling the larger, logistic regression,
  10 stratified shuffle splits, mean held-out accuracy. About 0.5 = indistinguishable.
"""

from __future__ import annotations

import numpy as np

from .divergence import EPS

# scikit-learn is imported where an attack is fitted: importing this package (the SISA
# evaluation does, for the macro scores) stays light.


def true_class_confidence(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """p_y(x) per row."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    return probs[np.arange(len(y)), y] if len(y) else np.zeros(0)


def sample_cross_entropy(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """-log p_y(x) per row (p floored at 1e-12)."""
    return -np.log(np.maximum(true_class_confidence(probs, y), EPS))


def mia_efficacy(conf_retain: np.ndarray, conf_test: np.ndarray, conf_forget: np.ndarray,
                 seed: int = 0) -> float:
    """Fraction of D_f that an SVC on true-class confidence calls a non-member."""
    conf_retain, conf_test = np.asarray(conf_retain), np.asarray(conf_test)
    conf_forget = np.asarray(conf_forget)
    if len(conf_forget) == 0 or len(conf_test) == 0 or len(conf_retain) == 0:
        return float("nan")
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    n = min(len(conf_test), len(conf_retain))
    members = conf_retain[rng.choice(len(conf_retain), n, replace=False)]
    x = np.concatenate([members, conf_test]).reshape(-1, 1)
    label = np.concatenate([np.ones(n), np.zeros(len(conf_test))])
    clf = SVC(C=3, kernel="rbf", gamma="auto").fit(x, label)
    return float(np.mean(clf.predict(conf_forget.reshape(-1, 1)) == 0))


def loss_mia(loss_forget: np.ndarray, loss_test: np.ndarray, seed: int = 0,
             n_splits: int = 10) -> float:
    """Mean accuracy of a logistic-regression attack telling D_f losses from D_t losses."""
    loss_forget, loss_test = np.asarray(loss_forget), np.asarray(loss_test)
    n = min(len(loss_forget), len(loss_test))
    if n < n_splits:
        return float("nan")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    rng = np.random.default_rng(seed)
    f = loss_forget[rng.choice(len(loss_forget), n, replace=False)]
    t = loss_test[rng.choice(len(loss_test), n, replace=False)]
    x = np.concatenate([f, t]).reshape(-1, 1)
    label = np.concatenate([np.ones(n), np.zeros(n)])
    cv = StratifiedShuffleSplit(n_splits=n_splits, random_state=seed)
    return float(cross_val_score(LogisticRegression(), x, label, cv=cv,
                                 scoring="accuracy").mean())
