"""The training vocabulary a served model version publishes (``train_vocabulary.txt``): what the drift features'
out-of-vocabulary rates (:mod:`monitoring.features`) and the accuracy estimate's out-of-vocabulary entities
(:mod:`monitoring.estimation`) look words up in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path

VOCABULARY_FILE = "train_vocabulary.txt"
# A word is published in a version's vocabulary only once this many distinct training sentences hold it: reviewed
# live notes feed training, and a name or record number in a few of them must not reach the model repository
VOCABULARY_MIN_SENTENCES = 5
_DIGITS_AS_ZERO = str.maketrans("123456789", "000000000")
# Only words of this many letters count in a misspelling: shorter ones are one edit from too many others
MISSPELLING_MIN_LETTERS = 4


def vocabulary_key(word: str) -> str:
    """A word as the training vocabulary holds it: lower case, every digit 0 (a number's shape, not its value)."""
    return word.lower().translate(_DIGITS_AS_ZERO)


class Vocabulary(frozenset):
    """A published training vocabulary: its words, as a frozenset, and what :func:`is_misspelling` looks words up
    in, built on first use and kept with the words (a served model reads its vocabulary once)."""

    @cached_property
    def one_letter_dropped(self) -> frozenset[str]:
        """Every word of 4+ letters with one letter dropped."""
        return frozenset(variant for word in self if len(word) >= MISSPELLING_MIN_LETTERS and word.isalpha()
                         for variant in _one_letter_dropped(word))


def read_vocabulary(version_dir: Path | str) -> Vocabulary | None:
    """The training vocabulary published with a model version, or None when it has none."""
    path = Path(version_dir) / VOCABULARY_FILE
    if not path.exists():
        return None
    return Vocabulary(line for line in path.read_text(encoding="utf-8").splitlines() if line)


def write_vocabulary(sentences: Iterable[Sequence[str]], version_dir: Path | str,
                     min_sentences: int = VOCABULARY_MIN_SENTENCES) -> Path:
    """Write ``<version_dir>/train_vocabulary.txt``: the :func:`vocabulary_key` of every word found in at least
    ``min_sentences`` distinct ``sentences`` (token lists), sorted."""
    found = Counter(key for tokens in sentences for key in {vocabulary_key(t) for t in tokens if t.strip()})
    path = Path(version_dir) / VOCABULARY_FILE
    path.write_text("".join(f"{w}\n" for w in sorted(w for w, n in found.items() if n >= min_sentences)),
                    encoding="utf-8")
    return path


def _one_letter_dropped(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


def is_misspelling(key: str, vocabulary: Vocabulary) -> bool:
    """Whether a word (its :func:`vocabulary_key`) is out of ``vocabulary`` yet one edit from a word of it of 4+
    letters: a letter dropped, added or replaced, or two swapped. Symmetric deletes, as SymSpell looks words up:
    the two words are equal, or equal once each drops a letter (a few two-edit pairs match too)."""
    if key in vocabulary or len(key) < MISSPELLING_MIN_LETTERS - 1 or not key.isalpha():
        return False
    dropped = vocabulary.one_letter_dropped
    return key in dropped or any(variant in dropped or (len(variant) >= MISSPELLING_MIN_LETTERS
                                                        and variant in vocabulary)
                                 for variant in _one_letter_dropped(key))
