"""The CRF baseline ExperimentFlow compares the fine-tunes with: a linear-chain CRF (sklearn-crfsuite) on classic
word-shape and neighbour features, trained on IOB2 tags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medner.data import Sentence
from medner.labels import from_bio, to_bio

CRF_PARAMS = {"c1": 0.1, "c2": 0.1, "max_iterations": 100}


def word_features(tokens: Sequence[str], i: int) -> dict[str, Any]:
    """Classic CRF features of token ``i``: its shape and affixes and those of its neighbours."""
    def shape(prefix: str, word: str) -> dict[str, Any]:
        return {f"{prefix}lower": word.lower(), f"{prefix}suffix3": word[-3:].lower(),
                f"{prefix}istitle": word.istitle(), f"{prefix}isupper": word.isupper()}

    word = tokens[i]
    features: dict[str, Any] = {"bias": 1.0, **shape("", word), "prefix3": word[:3].lower(),
                                "suffix2": word[-2:].lower(), "isdigit": word.isdigit(),
                                "hasdigit": any(c.isdigit() for c in word), "hyphen": "-" in word}
    for offset in (-2, -1, 1, 2):
        j = i + offset
        if 0 <= j < len(tokens):
            features.update(shape(f"{offset:+d}:", tokens[j]))
        elif abs(offset) == 1:
            features["BOS" if offset < 0 else "EOS"] = True
    return features


def sentence_features(tokens: Sequence[str]) -> list[dict[str, Any]]:
    return [word_features(tokens, i) for i in range(len(tokens))]


def train_crf(sentences: Sequence[Sentence], **params: Any) -> Any:
    """A linear-chain CRF (sklearn-crfsuite, L-BFGS) on IOB2 tags."""
    import sklearn_crfsuite

    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", all_possible_transitions=True, **{**CRF_PARAMS, **params})
    crf.fit([sentence_features(s.tokens) for s in sentences], [to_bio(s.labels) for s in sentences])
    return crf


def crf_predict(crf: Any, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
    return [from_bio(tags) for tags in crf.predict([sentence_features(tokens) for tokens in sentences])]
