"""The model-facing side of the TOFU / MUSE metrics: what a causal LM is asked, and how its
answers become the numbers :mod:`.metrics` turns into scores.

- Answers are scored alone: a row is ``<bos> Question: {q}\\nAnswer: {a} <eos>`` (the
  training documents' QA format) and only the answer's tokens (its ``<eos>`` included) count,
  the prompt's are masked out (:func:`answer_rows`, :func:`answer_nll`). Truth ratio, answer
  probability and forget quality follow TOFU (Maini et al. 2024).
- Greedy generation (:func:`greedy`) runs prompts of one length together, without a KV
  cache (the model is tiny): the argmax token is appended until ``<eos>``, a stop token or
  the length limit. Deterministic; a prompt's answer does not depend on the others.
- VerbMem, KnowMem, PrivLeak (Min-K% Prob, K = 40%) follow MUSE (Shi et al. 2024).

:func:`evaluate_model` computes everything that depends on one model only (the raw
:class:`ModelEval`); :func:`scores` turns it into the row of a comparison, given the
retrained model's own (forget quality and PrivLeak are relative to it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from . import metrics as M
from .corpus import ASSOCIATED, BIAS_PROMPT, BIAS_WORD, NEUTRAL_COMPLETION, NEUTRAL_WORD, QA
from .lm import token_logprobs
from .tokenizer import EOS, PAD, decode, encode, encode_prompt

MIN_K = 0.4  # MUSE's PrivLeak: Min-K% Prob with K = 40%
MAX_ANSWER_TOKENS = 40
BATCH = 64
Tick = Callable[[int], None]  # called with the number of prompts just generated


def qa_prompt(question: str) -> str:
    """The prompt of a question: the training documents' QA format up to the answer."""
    return f"Question: {question}\nAnswer:"


def answer_rows(tok, prompts: Sequence[str], answers: Sequence[str],
                context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows ``<bos> prompt answer <eos>`` ``(n, context)`` and the mask of the answer's
    target positions ``(n, context - 1)`` (position t predicts token t + 1; the prompt's
    tokens are excluded). The answer follows the prompt after one space, as in training."""
    x = torch.full((len(prompts), context), PAD, dtype=torch.long)
    mask = torch.zeros((len(prompts), context - 1), dtype=torch.bool)
    for i, (p, a) in enumerate(zip(prompts, answers, strict=True)):
        head = encode_prompt(tok, p)
        tail = [*tok.encode(" " + a, add_special_tokens=False).ids, EOS]
        ids = (head + tail)[:context]
        x[i, :len(ids)] = torch.tensor(ids)
        mask[i, len(head) - 1:len(ids) - 1] = True
    return x, mask


def _by_length(x: torch.Tensor) -> np.ndarray:
    """Row order by real length, so that batches carry little padding."""
    return np.argsort((x != PAD).sum(1).numpy(), kind="stable")


@torch.no_grad()
def logprobs(model: nn.Module, x: torch.Tensor,
             batch_size: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Per-token ``log p`` ``(n, context - 1)`` (0 at padding) and the real-target mask."""
    model.eval()
    n = len(x)
    lp = np.zeros((n, x.shape[1] - 1))
    mask = np.zeros((n, x.shape[1] - 1), dtype=bool)
    order = _by_length(x)
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        a, m = token_logprobs(model, x[idx])
        lp[idx], mask[idx] = a.double().numpy(), m.numpy()
    return lp, mask


def answer_nll(model: nn.Module, x: torch.Tensor, answer_mask: torch.Tensor) -> np.ndarray:
    """Each row's mean NLL over its answer tokens only ``(n,)``."""
    lp, _ = logprobs(model, x)
    m = answer_mask.numpy()
    return -(lp * m).sum(1) / np.maximum(m.sum(1), 1)


@torch.no_grad()
def greedy(model: nn.Module, prompts: Sequence[Sequence[int]], max_new: int | Sequence[int],
           stop: frozenset[int] = frozenset({EOS}), batch_size: int = BATCH,
           tick: Tick | None = None) -> list[list[int]]:
    """Greedy continuations (the new ids, the stop token excluded) of token prompts, at most
    ``max_new`` each and never past the model's context."""
    model.eval()
    limits = [max_new] * len(prompts) if isinstance(max_new, int) else list(max_new)
    context = int(getattr(model, "context", 1 << 30))
    out: list[list[int]] = [[] for _ in prompts]
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(len(p), []).append(i)
    for length in sorted(groups):
        members = groups[length]
        for j in range(0, len(members), batch_size):
            rows = members[j:j + batch_size]
            ids = torch.tensor([list(prompts[r]) for r in rows], dtype=torch.long)
            steps = min(max(limits[r] for r in rows), context - length)
            done = torch.zeros(len(rows), dtype=torch.bool)
            for _ in range(max(steps, 0)):
                nxt = model(ids)[:, -1].argmax(-1)
                ids = torch.cat([ids, nxt[:, None]], 1)
                done |= torch.tensor([int(t) in stop for t in nxt])
                if bool(done.all()):
                    break
            for k, r in enumerate(rows):
                new = ids[k, length:].tolist()[:limits[r]]
                cut = next((q for q, t in enumerate(new) if t in stop), len(new))
                out[r] = new[:cut]
            if tick is not None:
                tick(len(rows))
    return out


def newline_ids(tok) -> frozenset[int]:
    """``<eos>`` and every token whose text holds a newline (an answer ends there)."""
    size = tok.get_vocab_size(with_added_tokens=True)
    return frozenset({EOS} | {i for i in range(3, size) if "\n" in tok.decode([i])})


@dataclass
class EvalSet:
    """What every model is evaluated on (built once, shared by all models)."""

    tok: Any
    context: int
    forget_qa: list[QA]
    retain_qa: list[QA]
    holdout_qa: list[QA]
    forget_docs: list[str]
    retain_docs: list[str]
    holdout_docs: list[str]
    privacy_holdout_docs: list[str]  # the non-members of PrivLeak (holdout docs of the kinds
    # the forget set has)
    bias: bool = False
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, qas in (("forget", self.forget_qa), ("retain", self.retain_qa),
                          ("holdout", self.holdout_qa)):
            if not qas:
                continue
            prompts = [qa_prompt(q.question) for q in qas]
            k = len(qas[0].perturbed)
            for what, answers in (("answer", [q.answer for q in qas]),
                                  ("para", [q.paraphrase for q in qas]),
                                  ("pert", [p for q in qas for p in q.perturbed])):
                ps = prompts if what != "pert" else [p for p in prompts for _ in range(k)]
                x, m = answer_rows(self.tok, ps, answers, self.context)
                self.tensors[f"{name}_{what}_x"], self.tensors[f"{name}_{what}_m"] = x, m
        for name, docs in (("forget", self.forget_docs), ("retain", self.retain_docs),
                           ("holdout", self.holdout_docs), ("privacy", self.privacy_holdout_docs)):
            if docs:
                self.tensors[f"{name}_docs"] = torch.from_numpy(
                    encode(self.tok, docs, self.context)[0])

    def generations(self) -> int:
        """How many prompts :func:`evaluate_model` generates from."""
        return (len(self.forget_qa) + len(self.retain_qa) + len(self.holdout_qa)
                + len(self.forget_docs))


@dataclass
class ModelEval:
    """One model's raw evaluation (numbers only: a Ray task returns it)."""

    truth_ratio: dict[str, np.ndarray]  # forget / retain / holdout QA truth ratios R
    answer_prob: dict[str, float]  # mean length-normalised P(a|q)
    rouge: dict[str, float]  # mean ROUGE-L recall of the greedy answer
    verbmem: float
    min_k_forget: np.ndarray
    min_k_holdout: np.ndarray
    perplexity: dict[str, float]
    bias_gap: float = float("nan")
    control_gap: float = float("nan")
    examples: list[dict[str, str]] = field(default_factory=list)


def _qa_eval(model: nn.Module, s: EvalSet, name: str, qas: list[QA], stop: frozenset[int],
             tick: Tick | None) -> tuple[np.ndarray, float, float, list[str]]:
    t = s.tensors
    ans = answer_nll(model, t[f"{name}_answer_x"], t[f"{name}_answer_m"])
    para = answer_nll(model, t[f"{name}_para_x"], t[f"{name}_para_m"])
    pert = answer_nll(model, t[f"{name}_pert_x"], t[f"{name}_pert_m"]).reshape(len(qas), -1)
    prompts = [encode_prompt(s.tok, qa_prompt(q.question)) for q in qas]
    gen = greedy(model, prompts, MAX_ANSWER_TOKENS, stop, tick=tick)
    texts = [decode(s.tok, g).strip() for g in gen]
    rouge = M.rouge_l_recall(texts, [q.answer for q in qas])
    return (M.truth_ratio(para, pert), float(M.answer_probability(ans).mean()),
            float(rouge.mean()), texts)


def _continuation_logprob(model: nn.Module, tok, prompt: str, completion: str,
                          context: int) -> float:
    """log P(completion | prompt): the sum over the completion's tokens (no ``<eos>``)."""
    head = encode_prompt(tok, prompt)
    tail = tok.encode(completion, add_special_tokens=False).ids
    x = torch.full((1, context), PAD, dtype=torch.long)
    x[0, :len(head) + len(tail)] = torch.tensor(head + tail)
    lp, _ = logprobs(model, x)
    return float(lp[0, len(head) - 1:len(head) + len(tail) - 1].sum())


def association_gap(model: nn.Module, tok, word: str, context: int) -> float:
    """log P(ASSOCIATED | prompt) - log P(NEUTRAL_COMPLETION | prompt), the prompt
    :data:`~.corpus.BIAS_PROMPT` with ``word``."""
    prompt = BIAS_PROMPT.format(word=word)
    return M.association_gap(
        np.array([_continuation_logprob(model, tok, prompt, ASSOCIATED, context)]),
        np.array([_continuation_logprob(model, tok, prompt, NEUTRAL_COMPLETION, context)]))


def evaluate_model(model: nn.Module, s: EvalSet, tick: Tick | None = None) -> ModelEval:
    """Everything of one model: truth ratios, answer probabilities and greedy answers on the
    forget, retain and holdout QAs; VerbMem on the forget documents; Min-K% Prob of the
    forget and holdout documents; perplexities; the association gaps of a bias corpus."""
    model.eval()
    stop = newline_ids(s.tok)
    tr, ap, rouge = {}, {}, {}
    examples: list[dict[str, str]] = []
    for name, qas in (("forget", s.forget_qa), ("retain", s.retain_qa),
                      ("holdout", s.holdout_qa)):
        if not qas:
            tr[name], ap[name], rouge[name] = np.zeros(0), float("nan"), float("nan")
            continue
        tr[name], ap[name], rouge[name], texts = _qa_eval(model, s, name, qas, stop, tick)
        examples.append({"set": name, "question": qas[0].question, "answer": qas[0].answer,
                         "generated": texts[0]})
    verbmem = float("nan")
    if s.forget_docs:
        halves = [len(d) // 2 for d in s.forget_docs]
        prompts = [encode_prompt(s.tok, d[:h]) for d, h in zip(s.forget_docs, halves,
                                                               strict=True)]
        refs = [d[h:] for d, h in zip(s.forget_docs, halves, strict=True)]
        limits = [len(s.tok.encode(r, add_special_tokens=False).ids) for r in refs]
        gen = greedy(model, prompts, limits, tick=tick)
        verbmem = float(M.rouge_l_recall([decode(s.tok, g) for g in gen], refs).mean())
    ppl, mink = {}, {}
    for name in ("forget", "retain", "holdout", "privacy"):
        x = s.tensors.get(f"{name}_docs")
        if x is None:
            ppl[name], mink[name] = float("nan"), np.zeros(0)
            continue
        lp, m = logprobs(model, x)
        ppl[name] = M.perplexity(lp, m)
        mink[name] = M.min_k_prob(lp, m, MIN_K)
    out = ModelEval(truth_ratio=tr, answer_prob=ap, rouge=rouge, verbmem=verbmem,
                    min_k_forget=mink["forget"], min_k_holdout=mink["privacy"],
                    perplexity={k: ppl[k] for k in ("forget", "retain", "holdout")},
                    examples=examples)
    if s.bias:
        out.bias_gap = association_gap(model, s.tok, BIAS_WORD, s.context)
        out.control_gap = association_gap(model, s.tok, NEUTRAL_WORD, s.context)
    return out


def _auc(e: ModelEval) -> float:
    if not len(e.min_k_forget) or not len(e.min_k_holdout):
        return float("nan")
    return M.auc(e.min_k_forget, e.min_k_holdout)


def scores(e: ModelEval, retrain: ModelEval) -> dict[str, float]:
    """A comparison row's metrics: forget quality (TOFU: the KS-test p-value of the forget
    truth ratios against the retrained model's), model utility (TOFU: the harmonic mean of
    answer probability, ROUGE-L recall and truth-ratio score on the retain and holdout QAs),
    PrivLeak (MUSE: the Min-K% AUC of forget vs holdout documents relative to the retrained
    model's), VerbMem and KnowMem (MUSE), perplexities and the association gaps."""
    nan = float("nan")
    fq = (M.forget_quality(e.truth_ratio["forget"], retrain.truth_ratio["forget"])
          if len(e.truth_ratio["forget"]) and len(retrain.truth_ratio["forget"]) else nan)
    parts = []
    for name in ("retain", "holdout"):
        if len(e.truth_ratio[name]):
            parts += [e.answer_prob[name], e.rouge[name],
                      M.truth_ratio_score(e.truth_ratio[name])]
    auc, auc_ref = _auc(e), _auc(retrain)
    leak = nan if np.isnan(auc) or np.isnan(auc_ref) or auc_ref <= 0 else \
        M.priv_leak(auc, auc_ref)
    return {
        "forget_quality": fq,
        "model_utility": M.model_utility(parts) if parts else nan,
        "priv_leak": leak, "auc": auc,
        "verbmem": e.verbmem,
        "knowmem_forget": e.rouge["forget"], "knowmem_retain": e.rouge["retain"],
        "forget_truth_ratio": (M.truth_ratio_score(e.truth_ratio["forget"], forget=True)
                               if len(e.truth_ratio["forget"]) else nan),
        "ppl_forget": e.perplexity["forget"], "ppl_retain": e.perplexity["retain"],
        "ppl_holdout": e.perplexity["holdout"],
        "bias_gap": e.bias_gap, "control_gap": e.control_gap,
    }
