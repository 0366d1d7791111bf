"""A text comparison's data: the forget scenarios of a text dataset (``people:P``,
``bias``), the language-model methods it runs, and the corpus split into forget, retain
and holdout people with the evaluation set (TOFU, Maini et al. 2024: the holdout people are
never trained on)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data.sources import source_kind
from ..data.text import DEFAULT_CONTEXT, tofu_synth_options
from ..errors import ClulError
from ..hashing import derive_seed
from ..text import corpus as C
from ..text.evaluate import EvalSet
from ..text.tokenizer import byte_tokenizer, encode, vocab_size
from .base import Split, get_method, method_names
from .compare import CompareSpec

SALT_EVAL_SAMPLE = 0x7E7
EVAL_QA_CAP = 300  # retain / holdout QAs scored per model (a seeded sample, as TOFU's subset)
EVAL_DOC_CAP = 1000  # retain documents whose perplexity is measured


@dataclass(frozen=True)
class TextScenario:
    kind: str  # "people" or "bias"
    fraction: float = 0.0


def parse_text_scenario(spec: str) -> TextScenario:
    """``people:P`` (P as ``10%`` or ``0.1``) or ``bias``; anything else refused."""
    kind, _, arg = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind == "bias" and not arg.strip():
        return TextScenario("bias")
    if kind != "people":
        raise ClulError(f"forget scenario '{spec}' is not for text datasets (use people:P, "
                        "e.g. people:10%, or bias)")
    a = arg.strip()
    try:
        p = float(a[:-1]) / 100 if a.endswith("%") else float(a)
    except ValueError:
        raise ClulError(f"people scenario needs a fraction: 'people:10%' or 'people:0.1', got "
                        f"'{spec}'") from None
    if not 0.0 < p < 1.0:
        raise ClulError(f"'{spec}' names no person to forget or every one (the fraction must "
                        "be in (0, 1))")
    return TextScenario("people", p)


def lm_method_names() -> list[str]:
    """The registered language-model methods (``task="lm"``)."""
    try:
        return method_names(task="lm")  # type: ignore[call-arg]
    except TypeError:  # a registry without tasks has none
        return []


def resolve_lm_methods(methods: Sequence[str]) -> list[str]:
    """``all`` (the language-model methods) or names -> the methods, ``retrain`` first."""
    names: list[str] = []
    for m in methods:
        for part in (p.strip() for p in m.split(",")):
            if not part or part == "retrain":
                continue
            for name in (lm_method_names() if part == "all" else [part]):
                if getattr(get_method(name), "task", "classify") != "lm":
                    raise ClulError(f"{name} unlearns classifiers; on a text dataset compare "
                                    f"runs the language-model methods "
                                    f"({', '.join(lm_method_names()) or 'none registered'})")
                if name not in names:
                    names.append(name)
    if not names:
        raise ClulError("no language-model methods to compare (use --methods all or a "
                        "comma-separated list)")
    return ["retrain", *names]


@dataclass
class TextData:
    forget: Split
    retain: Split
    people: dict[str, np.ndarray]  # forget / retain / holdout people
    doc_ids: dict[str, np.ndarray]  # forget / retain / holdout document ids
    evalset: EvalSet
    vocab: int
    context: int
    scenario: TextScenario

    @property
    def full(self) -> Split:
        return Split(torch.cat([self.retain.x, self.forget.x]),
                     torch.cat([self.retain.y, self.forget.y]))


def _sample(items: list, cap: int, seed: int) -> list:
    if len(items) <= cap:
        return items
    keep = np.sort(np.random.default_rng(derive_seed(seed, SALT_EVAL_SAMPLE)).choice(
        len(items), cap, replace=False))
    return [items[i] for i in keep]


def load_text_data(spec: CompareSpec) -> TextData:
    """The corpus, the people split, the token rows and the evaluation set of ``spec``."""
    if source_kind(spec.dataset) != "tofu-synth":
        raise ClulError(f"compare on text needs question/answer pairs to score; "
                        f"{spec.dataset} has none (use tofu-synth:N)")
    scenario = parse_text_scenario(spec.forget)
    n, seed, bias = tofu_synth_options(spec.dataset)
    if scenario.kind == "bias" and bias <= 0:
        raise ClulError(f"--forget bias needs a corpus with bias documents (e.g. "
                        f"tofu-synth:{n}:bias=0.5), got {spec.dataset}")
    corpus = C.tofu_synth(n, seed, bias)
    f_people, r_people, h_people = C.person_splits(n, scenario.fraction, spec.test_fraction,
                                                   spec.seed)
    if not len(h_people):
        raise ClulError(f"test_fraction {spec.test_fraction} of {n} people leaves no holdout "
                        "person")
    trained = np.union1d(f_people, r_people)
    train_ids = C.ids_of_people(corpus, trained)
    if scenario.kind == "bias":
        forget_ids = np.intersect1d(C.bias_ids(corpus), train_ids)
        if not len(forget_ids):
            raise ClulError(f"{spec.dataset} has no bias document outside the holdout people")
    else:
        forget_ids = C.ids_of_people(corpus, f_people)
    retain_ids = np.setdiff1d(train_ids, forget_ids)
    if not len(retain_ids):
        raise ClulError(f"forget {spec.forget} leaves no retain document")
    holdout_ids = C.ids_of_people(corpus, h_people)
    docs = corpus.documents
    all_ids = docs.column("id").to_numpy()
    texts = docs.column("text").to_pylist()
    kinds = np.asarray(docs.column("kind").to_pylist())
    pos = {int(i): k for k, i in enumerate(all_ids)}

    def text_of(ids: np.ndarray) -> list[str]:
        return [texts[pos[int(i)]] for i in ids]

    tok, context = byte_tokenizer(), DEFAULT_CONTEXT

    def split(ids: np.ndarray) -> Split:
        x, _ = encode(tok, text_of(ids), context)
        return Split.from_numpy(x.astype(np.float32), np.zeros(len(ids)), ids)

    qa_of = {k: [q for q in corpus.qa if q.person in set(p.tolist())]
             for k, p in (("forget", f_people), ("retain", r_people), ("holdout", h_people))}
    forget_kinds = set(kinds[[pos[int(i)] for i in forget_ids]])
    privacy = [i for i in holdout_ids if kinds[pos[int(i)]] in forget_kinds]
    evalset = EvalSet(
        tok=tok, context=context,
        forget_qa=qa_of["forget"] if scenario.kind == "people" else [],
        retain_qa=_sample(qa_of["retain"], EVAL_QA_CAP, spec.seed),
        holdout_qa=_sample(qa_of["holdout"], EVAL_QA_CAP, spec.seed + 1),
        forget_docs=text_of(forget_ids),
        retain_docs=_sample(text_of(retain_ids), EVAL_DOC_CAP, spec.seed + 2),
        holdout_docs=text_of(holdout_ids), privacy_holdout_docs=text_of(np.asarray(privacy)),
        bias=bias > 0)
    return TextData(forget=split(forget_ids), retain=split(retain_ids),
                    people={"forget": f_people, "retain": r_people, "holdout": h_people},
                    doc_ids={"forget": forget_ids, "retain": retain_ids,
                             "holdout": holdout_ids},
                    evalset=evalset, vocab=vocab_size(tok), context=context, scenario=scenario)
