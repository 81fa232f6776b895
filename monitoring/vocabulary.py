"""The training vocabulary a served model version publishes (``train_vocabulary.txt``): what the drift features'
out-of-vocabulary rates (:mod:`monitoring.features`) and the accuracy estimate's out-of-vocabulary entities
(:mod:`monitoring.estimation`) look words up in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

VOCABULARY_FILE = "train_vocabulary.txt"
# A word is published in a version's vocabulary only once this many distinct training sentences hold it: reviewed
# live notes feed training, and a name or record number in a few of them must not reach the model repository
VOCABULARY_MIN_SENTENCES = 5
_DIGITS_AS_ZERO = str.maketrans("123456789", "000000000")


def vocabulary_key(word: str) -> str:
    """A word as the training vocabulary holds it: lower case, every digit 0 (a number's shape, not its value)."""
    return word.lower().translate(_DIGITS_AS_ZERO)


def read_vocabulary(version_dir: Path | str) -> frozenset[str] | None:
    """The training vocabulary published with a model version, or None when it has none."""
    path = Path(version_dir) / VOCABULARY_FILE
    if not path.exists():
        return None
    return frozenset(line for line in path.read_text(encoding="utf-8").splitlines() if line)


def write_vocabulary(sentences: Iterable[Sequence[str]], version_dir: Path | str,
                     min_sentences: int = VOCABULARY_MIN_SENTENCES) -> Path:
    """Write ``<version_dir>/train_vocabulary.txt``: the :func:`vocabulary_key` of every word found in at least
    ``min_sentences`` distinct ``sentences`` (token lists), sorted."""
    found = Counter(key for tokens in sentences for key in {vocabulary_key(t) for t in tokens if t.strip()})
    path = Path(version_dir) / VOCABULARY_FILE
    path.write_text("".join(f"{w}\n" for w in sorted(w for w, n in found.items() if n >= min_sentences)),
                    encoding="utf-8")
    return path
