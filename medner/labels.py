"""The label scheme.

Files carry one label per token: ``O`` (outside), ``D`` (disease) or ``T`` (treatment). An entity
is a maximal run of one label, so the corpus cannot mark two adjacent entities of one type. Inside
the model we use IOB2 tags (``B-D``, ``I-D``, ...), which lets the decoder forbid impossible
sequences; decoded tags are read back as runs, the same way the corpus is.
"""

from __future__ import annotations

from collections.abc import Sequence

OUTSIDE = "O"
ENTITY_TYPES: tuple[str, ...] = ("D", "T")
ENTITY_NAMES = {"D": "disease", "T": "treatment"}
FILE_LABELS: tuple[str, ...] = (OUTSIDE, *ENTITY_TYPES)

#: Model tags, in the order of the classifier's outputs.
BIO_TAGS: tuple[str, ...] = (OUTSIDE, *(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I")))
TAG2ID: dict[str, int] = {tag: i for i, tag in enumerate(BIO_TAGS)}
ID2TAG: dict[int, str] = dict(enumerate(BIO_TAGS))
IGNORE_INDEX = -100  # a training target no loss reads: continuation word-pieces, special tokens, teacher-only rows


def to_bio(labels: Sequence[str]) -> list[str]:
    """O/D/T labels -> IOB2 tags; each maximal run of one type becomes one entity."""
    tags: list[str] = []
    previous = OUTSIDE
    for label in labels:
        if label == OUTSIDE:
            tags.append(OUTSIDE)
        else:
            tags.append(f"I-{label}" if label == previous else f"B-{label}")
        previous = label
    return tags


def from_bio(tags: Sequence[str]) -> list[str]:
    """IOB2 tags -> O/D/T labels (drops the B/I distinction, so adjacent runs of a type merge)."""
    return [OUTSIDE if tag == OUTSIDE else tag[2:] for tag in tags]


def allowed_transition(previous: str | None, current: str) -> bool:
    """Whether ``current`` may follow ``previous`` in IOB2 (``None`` is the sentence start)."""
    if not current.startswith("I-"):
        return True
    return previous is not None and previous != OUTSIDE and previous[2:] == current[2:]
