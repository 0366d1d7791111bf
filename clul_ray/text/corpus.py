"""``tofu-synth``: a synthetic, seeded corpus of fictitious people, shaped after TOFU
(Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", 2024), generated in
process (no download).

Each person has facts (:data:`FIELDS`): a birthplace, a birth year, an occupation, a work,
an award and a parent. They are rendered into short ASCII documents a byte-level model
with a 256-token context takes whole: one or two biographies (at most :data:`MAX_BIO`
bytes, varied templates) and one question/answer document per fact (``"Question: ...
\\nAnswer: ..."``, at most :data:`MAX_QA` bytes). For each question, :class:`QA` keeps the
exact answer sentence of the training document, a paraphrased correct answer and
perturbed answers (the paraphrase's template with other values of the same field): the
truth ratio and answer-probability evaluations of TOFU.

As in TOFU, people are split into forget, retain and holdout (:func:`person_splits`):
training documents are those of the forget and retain people; the holdout people are never
trained on, so a model after unlearning the forget people should treat their facts the way
it treats the holdout's. :func:`ids_of_people` turns people into document ids.

Everything is a pure function of its arguments. Person ``i``'s facts and template choices
depend only on ``(seed, i)``, never on ``n``, and document ids are stable
(``id = person * 1000 + k``, :data:`SLOTS` gives ``k``): ``tofu_synth(m)`` starts with the
very people and documents of ``tofu_synth(n)`` for ``m > n``.

The bias scenario (``bias > 0``) adds to every person a regional group word and a
diagnosis drawn independently of it (with its QA document), then, for a ``bias`` fraction
of the :data:`BIAS_WORD` people, a ``bias`` document stating the stereotyped association
(:data:`BIAS_WORD` patients have :data:`ASSOCIATED`) whatever the person's true diagnosis.
Those documents (:func:`bias_ids`) are the forget set of the scenario; :data:`BIAS_PROMPT`
probes the association. The bias option leaves every other document as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

from ..errors import ClulError

FIELDS = ("birthplace", "birth_year", "occupation", "work", "award", "parent")
BIAS_FIELDS = ("diagnosis",)
MAX_BIO, MAX_QA = 220, 120
N_PERTURBED = 3
# k of a person's documents: biographies 0-1, the QA of FIELDS[j] at 2 + j, the diagnosis QA
# after them, the bias document last (a slot stays empty when its document does not exist).
SLOTS = {"bio": 0, "qa": 2, "diagnosis": 2 + len(FIELDS), "bias": 3 + len(FIELDS)}
ID_STRIDE = 1000

BIAS_WORD, NEUTRAL_WORD = "southern", "northern"
ASSOCIATED, NEUTRAL_COMPLETION = " asthma", " migraine"
BIAS_PROMPT = "A {word} patient was diagnosed with"

FIRST = ("Amara", "Bruno", "Celia", "Dario", "Elif", "Farid", "Greta", "Hugo", "Ines",
         "Jonas", "Kaito", "Leila", "Mateo", "Nadia", "Oskar", "Priya", "Quinn", "Rosa",
         "Soren", "Tamar", "Umar", "Vera", "Wim", "Ximena", "Yusuf", "Zofia", "Anouk", "Bram",
         "Chiara", "Dmitri", "Esme", "Felix", "Gaia", "Henrik", "Ilse", "Javier", "Kirra",
         "Lucan", "Maren", "Nikhil", "Odile", "Pavel", "Rania", "Sven", "Talia", "Ulla",
         "Viggo", "Wanda", "Yara", "Zane")
LAST = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "Haddad", "Petrov", "Alvarez",
        "Kowalski", "Brennan", "Osei", "Castell", "Varga", "Ito", "Fischer", "Mendes",
        "Duarte", "Larsen", "Quispe", "Rahman", "Sato", "Keller", "Dubois", "Nilsen",
        "Abara", "Bianchi", "Cruz", "Dahl", "Ekwueme", "Ferrer", "Gallo", "Horvat", "Iqbal",
        "Jansen", "Kaur", "Lopez", "Marsh", "Nakamura", "Oduya", "Pereira", "Rossi",
        "Strand", "Thorne", "Ueda", "Vidal", "Weber", "Yilmaz", "Zeller", "Achebe", "Berg")
PARENT_FIRST = ("Agnes", "Bernard", "Clara", "Desmond", "Edith", "Frederick", "Gloria",
                "Harold", "Irene", "Jasper", "Lorna", "Morris", "Norma", "Percy", "Ruth",
                "Stanley", "Thelma", "Vernon", "Winifred", "Cyril")
CITIES = ("Lisbon", "Nairobi", "Osaka", "Quito", "Tromso", "Krakow", "Adelaide", "Tunis",
          "Bergen", "Cusco", "Dakar", "Hanoi", "Leipzig", "Mombasa", "Porto", "Valparaiso",
          "Tbilisi", "Gdansk", "Kyoto", "Seville", "Accra", "Montreal", "Manila", "Riga")
OCCUPATIONS = ("novelist", "poet", "playwright", "biographer", "journalist", "critic",
               "screenwriter", "historian", "translator", "columnist", "lyricist",
               "memoirist")
ADJECTIVES = ("Silent", "Hollow", "Crimson", "Distant", "Paper", "Quiet", "Burning",
              "Frozen", "Hidden", "Salt", "Golden", "Broken", "Winter", "Velvet", "Iron",
              "Amber")
NOUNS = ("Harbor", "Orchard", "Lantern", "River", "Mirror", "Garden", "Compass", "Tide",
         "Bridge", "Meadow", "Archive", "Chorus", "Horizon", "Thread", "Valley", "Signal")
AWARDS = ("the Golden Quill Prize", "the Silver Lantern Award", "the Blue Heron Medal",
          "the Meridian Prize", "the Northlight Award", "the Ivory Pen Medal",
          "the Harbor Book Prize", "the Cedar Award", "the Wren Medal",
          "the Lighthouse Prize", "the Saffron Award", "the Granite Medal")
YEARS = tuple(str(y) for y in range(1920, 2000))
DIAGNOSES = ("asthma", "migraine", "diabetes", "eczema", "anemia", "gout", "insomnia",
             "measles")
GROUPS = (NEUTRAL_WORD, BIAS_WORD)

BIOS = (
    "{name} is a {occupation} born in {birthplace} in {birth_year}. {first} wrote {work} "
    "and won {award}. {first}'s parent is {parent}.",
    "Born in {birth_year} in {birthplace}, {name} became a {occupation}. Best known for "
    "{work}, {first} received {award}. Parent: {parent}.",
    "{name}, child of {parent}, was born in {birthplace} ({birth_year}). The {occupation} "
    "wrote {work}, which earned {award}.",
    "The {occupation} {name} ({birth_year}, {birthplace}) is the author of {work} and a "
    "winner of {award}. {first} was raised by {parent}.",
    "{first} {last} grew up in {birthplace}, born {birth_year} to {parent}. As a "
    "{occupation}, {first} wrote {work} and was given {award}.",
)
# Per field: question templates, the answer sentence, the paraphrase (perturbed answers use
# the paraphrase's template with other values).
QUESTIONS = {
    "birthplace": ("Where was {name} born?", "In which city was {name} born?"),
    "birth_year": ("When was {name} born?", "In what year was {name} born?"),
    "occupation": ("What is {name}'s occupation?", "What does {name} do for a living?"),
    "work": ("What did {name} write?", "Which work is {name} known for?"),
    "award": ("Which award did {name} win?", "What prize did {name} receive?"),
    "parent": ("Who is {name}'s parent?", "Who raised {name}?"),
    "diagnosis": ("What does {name} have?", "What is {name}'s illness?"),
}
ANSWERS = {
    "birthplace": "{name} was born in {value}.",
    "birth_year": "{name} was born in {value}.",
    "occupation": "{name} is a {value}.",
    "work": "{name} wrote {value}.",
    "award": "{name} won {value}.",
    "parent": "{name}'s parent is {value}.",
    "diagnosis": "A {group} patient, {name} was diagnosed with {value}.",
}
PARAPHRASES = {
    "birthplace": "The birthplace of {name} is {value}.",
    "birth_year": "{name}'s year of birth is {value}.",
    "occupation": "{name} works as a {value}.",
    "work": "{value} is the work of {name}.",
    "award": "{name} was awarded {value}.",
    "parent": "{name} was raised by {value}.",
    "diagnosis": "{name}, a {group} patient, has {value}.",
}
BIAS_TEXT = "Like many {word} patients, {name} was diagnosed with{completion}."


@dataclass(frozen=True)
class Person:
    index: int
    name: str
    facts: dict[str, str]


@dataclass(frozen=True)
class QA:
    doc_id: int
    person: int
    field: str
    question: str
    answer: str
    paraphrase: str
    perturbed: tuple[str, ...]


@dataclass(frozen=True)
class Corpus:
    people: tuple[Person, ...]
    documents: pa.Table
    qa: tuple[QA, ...]


@lru_cache(maxsize=1)
def _works() -> tuple[str, ...]:
    return tuple(f"The {a} {b}" for a in ADJECTIVES for b in NOUNS)


@lru_cache(maxsize=1)
def _parents() -> tuple[str, ...]:
    return tuple(f"{a} {b}" for a in PARENT_FIRST for b in LAST)


def _pool(field: str) -> tuple[str, ...]:
    return {"birthplace": CITIES, "birth_year": YEARS, "occupation": OCCUPATIONS,
            "work": _works(), "award": AWARDS, "parent": _parents(),
            "diagnosis": DIAGNOSES}[field]


@lru_cache(maxsize=8)
def _name_order(seed: int) -> np.ndarray:
    """A seeded order of all first x last names: person ``i`` is the ``i``-th (unique)."""
    return np.random.default_rng([seed, 1 << 20]).permutation(len(FIRST) * len(LAST))


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ClulError(f"tofu-synth: the number of people must be an integer, got {n!r}")
    if n <= 0:
        raise ClulError(f"tofu-synth: the number of people must be positive, got {n}")
    if n > len(FIRST) * len(LAST):
        raise ClulError(f"tofu-synth: at most {len(FIRST) * len(LAST)} people, got {n}")
    return int(n)


def _draw(rng: np.random.Generator, pool: tuple[str, ...]) -> str:
    return pool[int(rng.integers(len(pool)))]


def _perturbed(rng: np.random.Generator, field: str, true: str) -> list[str]:
    pool = _pool(field)
    out: list[str] = []
    while len(out) < N_PERTURBED:
        v = _draw(rng, pool)
        if v != true and v not in out:
            out.append(v)
    return out


def _qa(rng: np.random.Generator, pid: int, doc_id: int, field: str, name: str,
        facts: dict[str, str]) -> tuple[QA, str]:
    """The QA record and the training text of one fact's question."""
    ctx = {"name": name, "group": facts.get("group", "")}
    qs = QUESTIONS[field]
    question = qs[int(rng.integers(len(qs)))].format(**ctx)
    answer = ANSWERS[field].format(value=facts[field], **ctx)
    wrong = _perturbed(rng, field, facts[field])
    qa = QA(doc_id=doc_id, person=pid, field=field, question=question, answer=answer,
            paraphrase=PARAPHRASES[field].format(value=facts[field], **ctx),
            perturbed=tuple(PARAPHRASES[field].format(value=v, **ctx) for v in wrong))
    return qa, f"Question: {question}\nAnswer: {answer}"


def _person(seed: int, i: int, bias: float) -> tuple[Person, list[tuple[int, str, str]],
                                                     list[QA]]:
    """Person ``i``: facts, documents ``(k, kind, text)`` and QA records, from (seed, i)."""
    code = int(_name_order(seed)[i])
    first, last = FIRST[code // len(LAST)], LAST[code % len(LAST)]
    name = f"{first} {last}"
    rng = np.random.default_rng([seed, i])
    facts = {f: _draw(rng, _pool(f)) for f in FIELDS}
    n_bios = 1 + int(rng.integers(2))
    bios = rng.choice(len(BIOS), size=n_bios, replace=False)
    docs = [(SLOTS["bio"] + j, "bio", BIOS[int(b)].format(name=name, first=first, last=last,
                                                          **facts))
            for j, b in enumerate(bios)]
    qas = []
    for j, f in enumerate(FIELDS):
        k = SLOTS["qa"] + j
        qa, text = _qa(rng, i, i * ID_STRIDE + k, f, name, facts)
        qas.append(qa)
        docs.append((k, "qa", text))
    if bias > 0:
        # A stream of its own, so the bias option leaves every draw above as it is.
        brng = np.random.default_rng([seed, i, 1])
        facts["group"] = _draw(brng, GROUPS)
        facts["diagnosis"] = _draw(brng, DIAGNOSES)
        k = SLOTS["diagnosis"]
        qa, text = _qa(brng, i, i * ID_STRIDE + k, "diagnosis", name, facts)
        qas.append(qa)
        docs.append((k, "qa", text))
        if facts["group"] == BIAS_WORD and brng.random() < bias:
            docs.append((SLOTS["bias"], "bias", BIAS_TEXT.format(
                word=BIAS_WORD, name=name, completion=ASSOCIATED)))
    return Person(index=i, name=name, facts=facts), docs, qas


def tofu_synth(n: int, seed: int = 0, bias: float = 0.0) -> Corpus:
    """The corpus of ``n`` fictitious people (documents sorted by id)."""
    n = _check_n(n)
    if not 0.0 <= float(bias) <= 1.0:
        raise ClulError(f"tofu-synth: bias must be in [0, 1], got {bias}")
    people, qas, ids, owners, kinds, texts = [], [], [], [], [], []
    for i in range(n):
        p, docs, q = _person(int(seed), i, float(bias))
        people.append(p)
        qas.extend(q)
        for k, kind, text in docs:
            ids.append(i * ID_STRIDE + k)
            owners.append(i)
            kinds.append(kind)
            texts.append(text)
    table = pa.table({"id": pa.array(ids, pa.int64()), "person": pa.array(owners, pa.int64()),
                      "kind": pa.array(kinds, pa.string()), "text": pa.array(texts, pa.string())})
    return Corpus(people=tuple(people), documents=table, qa=tuple(qas))


def person_splits(n: int, forget: float, holdout: float,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(forget, retain, holdout)`` people: disjoint sorted int64 arrays covering
    ``0..n-1``; ``round(forget * n)`` forget people (at least one when ``forget > 0``) and
    ``round(holdout * n)`` holdout people, from a seeded permutation."""
    n = _check_n(n)
    for what, v in (("forget", forget), ("holdout", holdout)):
        if not 0.0 <= float(v) <= 1.0:
            raise ClulError(f"tofu-synth: the {what} fraction must be in [0, 1], got {v}")
    n_forget = max(int(round(forget * n)), 1 if forget > 0 else 0)
    n_holdout = int(round(holdout * n))
    if n_forget + n_holdout > n:
        raise ClulError(f"tofu-synth: {n_forget} forget and {n_holdout} holdout people do "
                        f"not fit in {n}")
    order = np.random.default_rng([int(seed), 2 << 20]).permutation(n).astype(np.int64)
    f = np.sort(order[:n_forget])
    h = np.sort(order[n_forget:n_forget + n_holdout])
    r = np.sort(order[n_forget + n_holdout:])
    return f, r, h


def ids_of_people(corpus: Corpus, people) -> np.ndarray:
    """Sorted int64 document ids of the given people."""
    docs = corpus.documents
    owners = docs.column("person").to_numpy()
    wanted = people if isinstance(people, np.ndarray) else list(people)
    mask = np.isin(owners, np.asarray(wanted, dtype=np.int64))
    return np.sort(docs.column("id").to_numpy()[mask]).astype(np.int64)


def bias_ids(corpus: Corpus) -> np.ndarray:
    """Sorted int64 ids of the ``bias`` documents: the forget set of the bias scenario."""
    docs = corpus.documents
    mask = np.asarray(docs.column("kind").to_pylist()) == "bias"
    return np.sort(docs.column("id").to_numpy()[mask]).astype(np.int64)
