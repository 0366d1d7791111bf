"""The TOFU / MUSE unlearning metrics as pure functions of numbers and strings.

The model-facing side (log-probabilities of a causal LM) lives elsewhere; every function here
takes already computed per-token log-probabilities or per-answer mean negative
log-likelihoods (NLL, natural log) and returns numpy arrays or floats. Conventions:

- ``mean_nll`` is the per-token mean NLL of an answer given its question, so
  ``exp(-mean_nll) = P(a|q)^(1/|a|)`` (TOFU's length-normalised probability).
- ``token_logprobs`` / ``mask`` are ``(n, t)`` arrays: log p of each true next token and a
  bool mask that is True on real tokens (padding is ignored whatever its value).

Bad input (mismatched shapes, empty arrays, non-finite values where numbers are needed)
raises :class:`~clul_ray.errors.ClulError` with a one-line message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from clul_ray.errors import ClulError

__all__ = [
    "answer_probability",
    "truth_ratio",
    "truth_ratio_score",
    "forget_quality",
    "rouge_l_recall",
    "model_utility",
    "min_k_prob",
    "auc",
    "priv_leak",
    "perplexity",
    "ensemble_logprobs",
    "association_gap",
]


# ----------------------------------------------------------------------------- validation


def _array(x, name: str, ndim: int | None = None, finite: bool = True) -> np.ndarray:
    """``x`` as a float array, refused when empty, of the wrong rank or (``finite``) with
    NaN/inf entries."""
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as e:
        raise ClulError(f"{name}: expected numbers ({e})") from None
    if ndim is not None and a.ndim != ndim:
        raise ClulError(f"{name}: expected a {ndim}-d array, got shape {a.shape}")
    if a.size == 0:
        raise ClulError(f"{name}: empty input")
    if finite and not np.all(np.isfinite(a)):
        raise ClulError(f"{name}: contains NaN or infinite values")
    return a


def _tokens(token_logprobs, mask, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(n, t)`` log-probabilities and bool mask; every real token finite."""
    lp = _array(token_logprobs, f"{name}: token_logprobs", ndim=2, finite=False)
    m = np.asarray(mask)
    if m.shape != lp.shape:
        raise ClulError(f"{name}: mask shape {m.shape} != token_logprobs shape {lp.shape}")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ClulError(f"{name}: mask must be boolean (or 0/1)")
        m = m.astype(bool)
    if not np.all(np.isfinite(lp[m])):
        raise ClulError(f"{name}: a real (masked-in) token has a NaN or infinite log-prob")
    if np.any(lp[m] > 1e-9):
        raise ClulError(f"{name}: log-probabilities must be <= 0")
    return lp, m


# ----------------------------------------------------------------------------- TOFU


def answer_probability(mean_nll: np.ndarray) -> np.ndarray:
    """TOFU (Maini et al. 2024): length-normalised P(a|q)^(1/|a|) = exp(-mean token NLL)."""
    nll = _array(mean_nll, "answer_probability: mean_nll")
    if np.any(nll < 0):
        raise ClulError("answer_probability: a mean NLL is negative")
    return np.exp(-nll)


def truth_ratio(paraphrase_mean_nll: np.ndarray, perturbed_mean_nll: np.ndarray) -> np.ndarray:
    """TOFU (Maini et al. 2024): R = geo-mean_j P(a_pert_j|q)^(1/|a|) / P(a_para|q)^(1/|a|)."""
    para = _array(paraphrase_mean_nll, "truth_ratio: paraphrase_mean_nll", ndim=1)
    pert = _array(perturbed_mean_nll, "truth_ratio: perturbed_mean_nll", ndim=2)
    if pert.shape[0] != para.shape[0]:
        raise ClulError(
            f"truth_ratio: {para.shape[0]} paraphrased answers but {pert.shape[0]} rows "
            "of perturbed answers"
        )
    # exp(mean_j(-nll_pert)) / exp(-nll_para), computed in log space.
    return np.exp(para - pert.mean(axis=1))


def truth_ratio_score(r: np.ndarray, *, forget: bool = False) -> float:
    """TOFU (Maini et al. 2024): mean max(0, 1 - R) (retain, holdout); mean min(R, 1/R) (forget)."""
    ratio = _array(r, "truth_ratio_score: r")
    if np.any(ratio <= 0):
        raise ClulError("truth_ratio_score: truth ratios must be positive")
    if forget:
        return float(np.mean(np.minimum(ratio, 1.0 / ratio)))
    return float(np.mean(np.maximum(0.0, 1.0 - ratio)))


def forget_quality(r_unlearned: np.ndarray, r_retrained: np.ndarray) -> float:
    """TOFU (Maini et al. 2024): two-sample KS-test p-value between unlearned and retrained R."""
    from scipy.stats import ks_2samp

    a = _array(r_unlearned, "forget_quality: r_unlearned", ndim=1)
    b = _array(r_retrained, "forget_quality: r_retrained", ndim=1)
    return float(ks_2samp(a, b).pvalue)


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """TOFU (Maini et al. 2024) / MUSE (Shi et al. 2024): rouge_score ROUGE-L recall per pair."""
    from rouge_score import rouge_scorer

    if isinstance(predictions, str) or isinstance(references, str):
        raise ClulError("rouge_l_recall: expected sequences of strings, not a single string")
    preds, refs = list(predictions), list(references)
    if not preds:
        raise ClulError("rouge_l_recall: empty input")
    if len(preds) != len(refs):
        raise ClulError(f"rouge_l_recall: {len(preds)} predictions but {len(refs)} references")
    if not all(isinstance(s, str) for s in preds + refs):
        raise ClulError("rouge_l_recall: every prediction and reference must be a string")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    # RougeScorer.score(target, prediction): recall = LCS / len(target tokens).
    pairs = zip(preds, refs, strict=True)
    return np.array([scorer.score(ref, pred)["rougeL"].recall for pred, ref in pairs])


def model_utility(values: Sequence[float]) -> float:
    """TOFU (Maini et al. 2024): harmonic mean of the retain/holdout metrics; 0 if any is <= 0."""
    v = _array(values, "model_utility: values", ndim=1)
    if np.any(v <= 0):
        return 0.0
    return float(len(v) / np.sum(1.0 / v))


# ----------------------------------------------------------------------------- MUSE


def min_k_prob(token_logprobs: np.ndarray, mask: np.ndarray, k: float = 0.4) -> np.ndarray:
    """Min-K% Prob (Shi et al. 2024, Detecting Pretraining Data from LLMs): mean lowest-k log p."""
    lp, m = _tokens(token_logprobs, mask, "min_k_prob")
    if not (isinstance(k, int | float) and 0.0 < float(k) <= 1.0):
        raise ClulError(f"min_k_prob: k must be in (0, 1], got {k!r}")
    out = np.empty(lp.shape[0])
    for i in range(lp.shape[0]):
        real = lp[i][m[i]]
        if real.size == 0:
            raise ClulError(f"min_k_prob: sequence {i} has no real tokens")
        # The reference implementation's count: int(len * k) (floor), at least one token.
        count = max(1, int(real.size * float(k)))
        out[i] = float(np.sort(real)[:count].mean())
    return out


def auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """ROC AUC of members (label 1) vs non-members (label 0) by score (sklearn roc_auc_score)."""
    from sklearn.metrics import roc_auc_score

    mem = _array(member_scores, "auc: member_scores", ndim=1)
    non = _array(nonmember_scores, "auc: nonmember_scores", ndim=1)
    labels = np.concatenate([np.ones(mem.size), np.zeros(non.size)])
    return float(roc_auc_score(labels, np.concatenate([mem, non])))


def priv_leak(auc_unlearned: float, auc_retrain: float) -> float:
    """MUSE (Shi et al. 2024): PrivLeak = (AUC_unlearned - AUC_retrain) / AUC_retrain * 100."""
    for name, x in (("auc_unlearned", auc_unlearned), ("auc_retrain", auc_retrain)):
        if not isinstance(x, int | float | np.floating | np.integer) or not math.isfinite(x):
            raise ClulError(f"priv_leak: {name} must be a finite number, got {x!r}")
        if not 0.0 <= float(x) <= 1.0:
            raise ClulError(f"priv_leak: {name} must lie in [0, 1], got {x!r}")
    if auc_retrain <= 0:
        raise ClulError("priv_leak: auc_retrain must be positive")
    return float((auc_unlearned - auc_retrain) / auc_retrain * 100.0)


# ----------------------------------------------------------------------------- general


def perplexity(token_logprobs: np.ndarray, mask: np.ndarray) -> float:
    """Perplexity: exp of the mean NLL over all real tokens of all sequences."""
    lp, m = _tokens(token_logprobs, mask, "perplexity")
    if not m.any():
        raise ClulError("perplexity: no real tokens")
    return float(np.exp(-lp[m].mean()))


def ensemble_logprobs(shard_probs: np.ndarray) -> np.ndarray:
    """SISA (Bourtoule et al. 2021) text ensemble: log of the shards' mean true-token prob."""
    p = _array(shard_probs, "ensemble_logprobs: shard_probs", ndim=3, finite=False)
    if np.any(np.isinf(p)):
        raise ClulError("ensemble_logprobs: contains infinite values")
    nan = np.isnan(p)
    if np.any(nan != nan[:1]):
        raise ClulError("ensemble_logprobs: shards disagree on padding (NaN positions)")
    real = p[~nan]
    if np.any(real < 0) or np.any(real > 1):
        raise ClulError("ensemble_logprobs: probabilities must lie in [0, 1]")
    with np.errstate(divide="ignore"):
        return np.log(p.mean(axis=0))  # NaN at padding stays NaN; all-zero gives -inf


def association_gap(logp_associated: np.ndarray, logp_neutral: np.ndarray) -> float:
    """Bias gap: mean over prompts of log P(associated | prompt) - log P(neutral | prompt)."""
    a = _array(logp_associated, "association_gap: logp_associated", ndim=1)
    b = _array(logp_neutral, "association_gap: logp_neutral", ndim=1)
    if a.shape != b.shape:
        raise ClulError(f"association_gap: shapes differ ({a.shape} vs {b.shape})")
    return float(np.mean(a - b))
