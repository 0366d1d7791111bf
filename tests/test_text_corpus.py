"""The synthetic TOFU-style corpus: determinism, stable ids, lengths, QA answers, person
splits and the bias scenario."""

from __future__ import annotations

import numpy as np
import pytest

from clul_ray.errors import ClulError
from clul_ray.text.corpus import (
    ASSOCIATED,
    BIAS_PROMPT,
    BIAS_WORD,
    FIELDS,
    MAX_BIO,
    MAX_QA,
    NEUTRAL_COMPLETION,
    NEUTRAL_WORD,
    bias_ids,
    ids_of_people,
    person_splits,
    tofu_synth,
)

pytestmark = pytest.mark.pure


@pytest.fixture(scope="module")
def corpus():
    return tofu_synth(300, seed=3)


def rows(c):
    return c.documents.to_pylist()


def test_deterministic():
    a, b = tofu_synth(40, seed=1), tofu_synth(40, seed=1)
    assert a.documents.equals(b.documents)
    assert a.people == b.people and a.qa == b.qa
    other = tofu_synth(40, seed=2)
    assert not a.documents.equals(other.documents)
    assert [p.name for p in a.people] != [p.name for p in other.people]


def test_prefix_stable_across_n():
    small, big = tofu_synth(25, seed=5), tofu_synth(90, seed=5)
    assert big.people[:25] == small.people
    n = small.documents.num_rows
    assert big.documents.slice(0, n).equals(small.documents)
    assert big.qa[:len(small.qa)] == small.qa
    assert set(big.documents.column("person").to_pylist()[n:]) == set(range(25, 90))


def test_ids_unique_and_tied_to_people(corpus):
    docs = corpus.documents
    ids = docs.column("id").to_numpy()
    assert docs.column("id").type.bit_width == 64 and docs.column("person").type.bit_width == 64
    assert len(np.unique(ids)) == len(ids) and np.all(np.diff(ids) > 0)
    assert np.array_equal(ids // 1000, docs.column("person").to_numpy())
    names = {p.index: p.name for p in corpus.people}
    assert len(set(names.values())) == len(names)
    assert [p.index for p in corpus.people] == list(range(300))
    for r in rows(corpus):
        assert names[r["person"]] in r["text"] or names[r["person"]].split()[0] in r["text"]


def test_documents_per_person(corpus):
    kinds: dict[int, list[str]] = {}
    for r in rows(corpus):
        kinds.setdefault(r["person"], []).append(r["kind"])
    counts = {k.count("bio") for k in kinds.values()}
    assert counts == {1, 2}
    assert all(k.count("qa") == len(FIELDS) and "bias" not in k for k in kinds.values())
    bios = [r["text"] for r in rows(corpus) if r["kind"] == "bio"]
    markers = (" is a ", "Born in ", ", child of ", "is the author of", " grew up in ")
    assert all(sum(m in b for m in markers) == 1 for b in bios)
    assert all(any(m in b for b in bios) for m in markers)  # every template is used
    qa_ids = {r["id"] for r in rows(corpus) if r["kind"] == "qa"}
    assert {q.doc_id for q in corpus.qa} == qa_ids


def test_lengths_and_ascii(corpus):
    for r in rows(tofu_synth(300, seed=3, bias=1.0)):
        data = r["text"].encode("utf-8")
        assert data.isascii()
        assert len(data) <= (MAX_BIO if r["kind"] == "bio" else MAX_QA), r["text"]
        if r["kind"] == "qa":
            assert r["text"].startswith("Question: ") and "\nAnswer: " in r["text"]


def test_qa_answers(corpus):
    texts = dict(zip(corpus.documents.column("id").to_pylist(),
                     corpus.documents.column("text").to_pylist(), strict=True))
    fields = set()
    for q in corpus.qa:
        fields.add(q.field)
        value = corpus.people[q.person].facts[q.field]
        assert texts[q.doc_id] == f"Question: {q.question}\nAnswer: {q.answer}"
        assert value in q.answer and value in q.paraphrase
        assert q.paraphrase != q.answer
        assert len(q.perturbed) >= 3 and len(set(q.perturbed)) == len(q.perturbed)
        assert q.paraphrase not in q.perturbed
        assert all(value not in p for p in q.perturbed)
        assert all(corpus.people[q.person].name in p for p in q.perturbed)
    assert fields == set(FIELDS)


def test_question_templates_vary(corpus):
    for field in FIELDS:
        starts = {q.question.split(corpus.people[q.person].name)[0]
                  for q in corpus.qa if q.field == field}
        assert len(starts) >= 2, field


def test_person_splits():
    f, r, h = person_splits(100, 0.1, 0.2, seed=4)
    assert (len(f), len(r), len(h)) == (10, 70, 20)
    assert all(a.dtype == np.int64 and np.all(np.diff(a) > 0) for a in (f, r, h))
    assert np.array_equal(np.sort(np.concatenate([f, r, h])), np.arange(100))
    again = person_splits(100, 0.1, 0.2, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((f, r, h), again, strict=True))
    assert not np.array_equal(f, person_splits(100, 0.1, 0.2, seed=5)[0])
    f1, r1, h1 = person_splits(10, 0.01, 0.0)
    assert len(f1) == 1 and len(h1) == 0 and len(r1) == 9
    assert len(person_splits(10, 0.0, 0.5)[0]) == 0
    with pytest.raises(ClulError):
        person_splits(10, 0.6, 0.5)
    with pytest.raises(ClulError):
        person_splits(10, -0.1, 0.0)


def test_ids_of_people(corpus):
    ids = ids_of_people(corpus, [3, 1])
    assert ids.dtype == np.int64 and np.all(np.diff(ids) > 0)
    assert set(ids // 1000) == {1, 3}
    per_person = corpus.documents.column("person").to_numpy()
    assert len(ids) == int(np.isin(per_person, [1, 3]).sum())
    assert np.array_equal(ids_of_people(corpus, np.array([1, 3])), ids)
    assert len(ids_of_people(corpus, [])) == 0


def test_bias_scenario():
    plain = tofu_synth(200, seed=7)
    biased = tofu_synth(200, seed=7, bias=0.5)
    assert len(bias_ids(plain)) == 0
    assert all("diagnosis" not in p.facts for p in plain.people)
    ids = bias_ids(biased)
    assert 10 < len(ids) < 100 and ids.dtype == np.int64
    # The bias option adds documents and leaves the others as they are.
    old = dict(zip(plain.documents.column("id").to_pylist(),
                   plain.documents.column("text").to_pylist(), strict=True))
    new = dict(zip(biased.documents.column("id").to_pylist(),
                   biased.documents.column("text").to_pylist(), strict=True))
    assert all(new[i] == t for i, t in old.items())
    assert set(plain.qa) <= set(biased.qa)
    added = {r["id"]: r for r in rows(biased) if r["id"] not in old}
    assert {r["kind"] for r in added.values()} == {"qa", "bias"}
    for i in ids:
        person = biased.people[int(i) // 1000]
        assert person.facts["group"] == BIAS_WORD
        assert added[int(i)]["text"].endswith(f"diagnosed with{ASSOCIATED}.")
    # Diagnoses are drawn independently of the group word: both groups have several.
    facts = [p.facts for p in biased.people]
    for word in (BIAS_WORD, NEUTRAL_WORD):
        assert len({f["diagnosis"] for f in facts if f["group"] == word}) >= 4
    diag = [q for q in biased.qa if q.field == "diagnosis"]
    assert len(diag) == 200 and all(len(q.perturbed) >= 3 for q in diag)
    assert NEUTRAL_COMPLETION.strip() != ASSOCIATED.strip()
    assert BIAS_PROMPT.format(word=BIAS_WORD) != BIAS_PROMPT.format(word=NEUTRAL_WORD)
    assert len(bias_ids(tofu_synth(200, seed=7, bias=1.0))) > len(ids)


@pytest.mark.parametrize("n", [0, -3])
def test_refuses_no_people(n):
    with pytest.raises(ClulError) as e:
        tofu_synth(n)
    assert "\n" not in str(e.value)
    with pytest.raises(ClulError):
        person_splits(n, 0.1, 0.1)


def test_refuses_bad_bias():
    with pytest.raises(ClulError):
        tofu_synth(5, bias=1.5)
