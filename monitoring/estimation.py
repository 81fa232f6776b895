"""The served model's accuracy on live notes, estimated without labels from its own confidences: average
thresholded confidence (ATC; Garg et al., "Leveraging unlabeled data to predict out-of-distribution performance",
ICLR 2022) for the entities it predicts, and the D/T probability it left on words tagged O for those it missed.

**Calibration** (export, on labelled sentences held out of training: TrainFlow's dev split), per served model:

* ``exact_at``: the entity score (the mean confidence of its words, what clients see) at and above which as many
  calibration entities lie as were exactly a gold entity (same type, same boundaries): on a window, the entities
  scoring at least that much are the ones counted right;
* ``overlap_at``: the same for the entities that overlap a gold entity of their type (the prediction then stands
  for one gold entity, found or not);
* ``missed_per_mass``: gold entities that no prediction overlaps, per unit of the probability mass the model put
  on D and T over the words it tagged O (one minus the confidence of those words).

Why thresholds rather than the expected chance at each score (an isotonic fit, as NannyML's CBPE does): shifted
text costs entities their boundaries while the model stays nearly as sure of them, so the calibrated chance moves
little; the share of entities past a threshold set high on the calibration's own ranks moves more, and on labelled
shifts it tracks the truth closer (benchmarks/results/drift_validation.md; the isotonic fits' errors are in its
history).

With the version's training vocabulary (:mod:`monitoring.vocabulary`), ``exact_at`` and ``overlap_at`` are fitted
twice: on entities whose words are all known, and (``*_oov``) on entities with a word absent from it, which the
model gets right less often at the same score; and ``missed_per_mass`` twice: gold entities missed with all words
known per unit of the mass on known O words, and (``missed_per_mass_oov``) those with an unknown word per unit of
the mass on unknown O words, where a missed name hides far more often. Typos, new drug names and shorthand make
more entities and O words of the second kind, so the estimate follows them down.

**Unfamiliar sentences** hide more misses than the calibration's share of unknown words says: where most words are
unseen (hurried shorthand, another genre) the model leaves names O with confidence. So the unknown-word missed
rate grows with a sentence's share of unknown words above the calibration sentences' mean (``unknown_share``), by
``missed_growth`` per unit of that excess, fitted at export (:func:`fit_missed_growth`) where the estimate comes
closest to the truth on the calibration sentences and on copies of them whose words were made unfamiliar
(:func:`scramble_words`: inner letters shuffled, a change none of the validation's shifts makes).

**Per sentence** the served model logs :data:`ESTIMATE_COLUMNS` beside the drift features (numbers only):
``entities`` (predicted), ``expected_correct`` (how many of them score at least ``exact_at``) and
``expected_gold`` (how many score at least ``overlap_at``, plus the missed rates times the O words' D/T mass, known
and unknown, the unknown rate grown with the sentence's share of unknown words).

**A window** (a merged whylogs profile): sums are read back as mean x count of each column, and

    precision = sum(expected_correct) / sum(entities)
    recall    = sum(expected_correct) / sum(expected_gold)
    F1        = 2 sum(expected_correct) / (sum(entities) + sum(expected_gold))

The estimate assumes the model's ranking of its own entities still holds on the window: shifted text whose errors
the model is as sure of as of its right answers is underestimated as a drop. ``benchmarks/drift_validation.py``
measures the estimate against the true F1 on labelled shifted windows (results/drift_validation.md).
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medner.data import Sentence
from medner.decoding import SpanEdges
from medner.inference import DecodedNote, Encoder, extract_decoded
from medner.labels import OUTSIDE
from medner.spans import join_tokens, split_words, token_spans_to_char_spans
from monitoring.vocabulary import vocabulary_key

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView

ESTIMATION_FILE = "estimation.json"
ESTIMATE_COLUMNS: tuple[str, ...] = ("entities", "expected_correct", "expected_gold")
MIN_CALIBRATION_ENTITIES = 20  # fewer predicted entities on the calibration sentences: no estimator
# The copies of the calibration sentences that the missed rate's growth is fitted on: words made unfamiliar at
# these rates (scramble_words), with a seeded draw, so an export fits the same growth; and the growths tried
SCRAMBLE_RATES = (0.2, 0.4, 0.6)
SCRAMBLE_SEED = 13
SCRAMBLE_MIN_LETTERS = 4
MISSED_GROWTHS = tuple(k / 2 for k in range(17))  # 0 to 8


@dataclass(frozen=True)
class Estimator:
    """The calibration of one served model (see the module docstring); ``calibration``: what it was fitted on."""

    exact_at: float  # entities scoring at least this count as exactly right
    overlap_at: float  # entities scoring at least this count as overlapping a gold entity
    missed_per_mass: float
    calibration: dict[str, Any] = field(default_factory=dict)
    # fitted apart for entities with an out-of-vocabulary word (the above: the others); None: one fit for all
    exact_at_oov: float | None = None
    overlap_at_oov: float | None = None
    # missed gold entities with an unknown word per unit of mass on unknown O words (``missed_per_mass``: then the
    # known ones'); None: one rate for every O word
    missed_per_mass_oov: float | None = None
    # how that rate grows with a sentence's share of unknown words above the calibration sentences' mean
    # (``unknown_share``): x (1 + missed_growth x the excess); None: it does not grow
    missed_growth: float | None = None
    unknown_share: float | None = None

    def save(self, version_dir: Path | str) -> Path:
        path = Path(version_dir) / ESTIMATION_FILE
        path.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, version_dir: Path | str) -> Estimator | None:
        """The estimator published with a model version, or None when it has none (or one this version of medner
        no longer reads: re-export the model for an estimate)."""
        path = Path(version_dir) / ESTIMATION_FILE
        if not path.exists():
            return None
        values = json.loads(path.read_text(encoding="utf-8"))
        if "exact_at" not in values:
            warnings.warn(f"{path}: an accuracy estimator of an earlier medner (score curves, not thresholds); "
                          "re-export the model (medner export) for an estimate", stacklevel=2)
            return None
        return cls(**values)

    def counted(self, scores: np.ndarray, oov: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(exact, overlap): 1.0 for each entity with these scores counted as exactly right, as overlapping a gold
        entity, else 0.0; ``oov``: which of them have an out-of-vocabulary word (judged by their own thresholds,
        where the estimator has them)."""
        exact_at, overlap_at = self.exact_at, self.overlap_at
        if oov is not None and self.exact_at_oov is not None:  # the two are fitted together
            exact_at = np.where(oov, self.exact_at_oov, exact_at)
            overlap_at = np.where(oov, self.overlap_at_oov, overlap_at)
        return (scores >= exact_at).astype(np.float64), (scores >= overlap_at).astype(np.float64)


def sentence_estimates(estimator: Estimator, entity_scores: np.ndarray, entity_sentence: np.ndarray,
                       outside_mass: np.ndarray, entity_oov: np.ndarray | None = None,
                       outside_mass_oov: np.ndarray | None = None, unknown_share: np.ndarray | None = None
                       ) -> np.ndarray:
    """:data:`ESTIMATE_COLUMNS` per sentence, ``(sentences, 3)``: ``entity_scores`` and ``entity_sentence`` (the
    sentence index of each predicted entity), ``outside_mass`` per sentence (sum of one minus the confidence of
    the words tagged O); ``entity_oov``: which entities have an out-of-vocabulary word, ``outside_mass_oov``: the
    part of ``outside_mass`` on out-of-vocabulary words, ``unknown_share``: each sentence's share of such words
    (None: unknown)."""
    sentences = len(outside_mass)
    exact, overlap = estimator.counted(entity_scores, entity_oov)
    columns = np.empty((sentences, len(ESTIMATE_COLUMNS)))
    columns[:, 0] = np.bincount(entity_sentence, minlength=sentences)
    columns[:, 1] = np.bincount(entity_sentence, weights=exact, minlength=sentences)
    missed = estimator.missed_per_mass * outside_mass
    if estimator.missed_per_mass_oov is not None and outside_mass_oov is not None:
        missed_oov = estimator.missed_per_mass_oov * outside_mass_oov
        if estimator.missed_growth and unknown_share is not None:
            missed_oov = missed_oov * (1.0 + estimator.missed_growth
                                       * np.maximum(unknown_share - estimator.unknown_share, 0.0))
        missed = estimator.missed_per_mass * (outside_mass - outside_mass_oov) + missed_oov
    columns[:, 2] = np.bincount(entity_sentence, weights=overlap, minlength=sentences) + missed
    return columns


# --- calibration ----------------------------------------------------------------------------------------------

def _threshold_for_share(scores: np.ndarray, share: float) -> float:
    """The score at and above which ``share`` of ``scores`` lie (ATC's threshold): the k-th highest, k = share x
    count rounded; just above the highest when k is 0, so that nothing counts."""
    ranked = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    k = int(round(share * len(ranked)))
    return float(ranked[k - 1]) if k > 0 else float(np.nextafter(ranked[0], np.inf))


def fit_estimator(decoded: Sequence[DecodedNote], gold: Sequence[Sequence[tuple[int, int, str]]],
                  source: str = "", words: Sequence[Sequence[tuple[int, int, bool]]] | None = None) -> Estimator:
    """Fit an :class:`Estimator` on notes the served model decoded (``decoded``) and their gold entities (character
    spans ``(start, end, label)`` per note). ``words``: per note, each decoded word's character span and whether it
    is out of the vocabulary; given, entities with an unknown word get thresholds of their own (with
    :data:`MIN_CALIBRATION_ENTITIES` entities of each kind), and missed entities a rate of their own (with
    :data:`MIN_CALIBRATION_ENTITIES` missed over both kinds). Raises ValueError with fewer than
    :data:`MIN_CALIBRATION_ENTITIES` predicted entities."""
    arrays = _note_arrays(decoded, gold, words)
    x, hit, near, unknown = arrays["scores"], arrays["exact"], arrays["overlap"], arrays["oov"]
    missed = arrays["missed"]
    mass = [float((arrays["mass"] - arrays["mass_oov"]).sum()), float(arrays["mass_oov"].sum())]
    if len(x) < MIN_CALIBRATION_ENTITIES:
        raise ValueError(f"{len(x)} predicted entities on the calibration sentences: need at least "
                         f"{MIN_CALIBRATION_ENTITIES} to calibrate the accuracy estimate")
    split = MIN_CALIBRATION_ENTITIES <= unknown.sum() <= len(unknown) - MIN_CALIBRATION_ENTITIES
    known = ~unknown if split else np.ones(len(x), dtype=bool)
    thresholds = _thresholds(x[known], hit[known], near[known])
    oov_thresholds = _thresholds(x[unknown], hit[unknown], near[unknown]) if split else (None, None)
    missed_apart = words is not None and sum(missed) >= MIN_CALIBRATION_ENTITIES and min(mass) > 0

    def rate(count: int, over: float) -> float:
        return round(count / over, 6) if over > 0 else 0.0

    return Estimator(
        *thresholds, missed_per_mass=rate(missed[0], mass[0]) if missed_apart else rate(sum(missed), sum(mass)),
        calibration={"source": source, "notes": len(decoded), "entities": len(x),
                     "gold_entities": sum(len(g) for g in gold), "missed": sum(missed),
                     **({"oov_entities": int(unknown.sum()), "oov_missed": missed[1]} if words is not None else {})},
        exact_at_oov=oov_thresholds[0], overlap_at_oov=oov_thresholds[1],
        missed_per_mass_oov=rate(missed[1], mass[1]) if missed_apart else None,
    )


def _has_unknown_word(words: Sequence[tuple[int, int, bool]], start: int, end: int) -> bool:
    """Whether a word out of the vocabulary lies within characters ``[start, end)`` (``words``: spans and flags)."""
    return any(unknown for word_start, word_end, unknown in words if word_start >= start and word_end <= end)


def _thresholds(scores: np.ndarray, exact: np.ndarray, overlap: np.ndarray) -> tuple[float, float]:
    """``exact_at`` and ``overlap_at`` of one set of entities: the scores past which their shares of exactly right
    and of overlapping entities lie."""
    return _threshold_for_share(scores, float(exact.mean())), _threshold_for_share(scores, float(overlap.mean()))


def gold_entities(sentence: Sentence) -> tuple[str, list[tuple[int, int, str]]]:
    """A labelled sentence as a note (its tokens joined by spaces, as export and evaluation send them) and its gold
    entities as character spans."""
    text, offsets = join_tokens(sentence.tokens)
    return text, [tuple(span) for span in token_spans_to_char_spans(sentence.spans, offsets)]


def calibrate(sentences: Sequence[Sentence], tokenizer: Any, encoder: Encoder, decoder: str = "viterbi",
              edges: SpanEdges | None = None, source: str = "", vocabulary: AbstractSet[str] | None = None
              ) -> Estimator:
    """:func:`fit_estimator` on labelled ``sentences`` sent through the serving path (each one a note); with the
    version's ``vocabulary``, entities and missed entities with an unknown word are fitted apart, and
    :func:`fit_missed_growth` fits how the missed rate grows in unfamiliar sentences on copies of them with
    scrambled words (:data:`SCRAMBLE_RATES`)."""

    def decoded_set(batch: Sequence[Sentence]) -> tuple[list[DecodedNote], list, list | None]:
        notes, gold = zip(*(gold_entities(s) for s in batch), strict=True) if batch else ((), ())
        _, decoded = extract_decoded(list(notes), tokenizer, encoder, decoder=decoder, edges=edges)
        words = None
        if vocabulary is not None:
            words = [[(start, end, vocabulary_key(text[start:end]) not in vocabulary)
                      for start, end in split_words(text)] for text in notes]
        return decoded, list(gold), words

    calibration = decoded_set(sentences)
    estimator = fit_estimator(*calibration[:2], source, calibration[2])
    if vocabulary is None or estimator.missed_per_mass_oov is None:
        return estimator
    rng = random.Random(SCRAMBLE_SEED)
    scrambled = [decoded_set([scramble_words(s, rate, rng) for s in sentences]) for rate in SCRAMBLE_RATES]
    return fit_missed_growth(estimator, [calibration, *scrambled])


def scramble_words(sentence: Sentence, rate: float, rng: random.Random) -> Sentence:
    """``sentence`` with each word of :data:`SCRAMBLE_MIN_LETTERS`+ letters, at ``rate``, made unfamiliar: its inner
    letters shuffled, its first and last kept (labels unchanged)."""
    tokens = []
    for token in sentence.tokens:
        if len(token) >= SCRAMBLE_MIN_LETTERS and token.isalpha() and rng.random() < rate:
            inner = list(token[1:-1])
            rng.shuffle(inner)
            token = token[0] + "".join(inner) + token[-1]
        tokens.append(token)
    return Sentence(tuple(tokens), sentence.labels)


def fit_missed_growth(estimator: Estimator, sets: Sequence[tuple[Sequence[DecodedNote], Sequence, Sequence]]
                      ) -> Estimator:
    """``estimator`` with ``unknown_share`` (the first set's mean share of unknown words per note) and the
    ``missed_growth`` of :data:`MISSED_GROWTHS` whose estimated F1 comes closest to the true F1 over ``sets``
    (least squares; each a ``(decoded, gold, words)`` of :func:`fit_estimator`: the calibration sentences, then
    copies made unfamiliar)."""
    arrays = [_note_arrays(*one) for one in sets]
    base = replace(estimator, unknown_share=round(float(arrays[0]["share"].mean()), 4) if len(arrays[0]["share"])
                   else 0.0)

    def squared_error(growth: float) -> float:
        grown = replace(base, missed_growth=growth)
        return sum((_estimated_f1(grown, a) - a["true_f1"]) ** 2 for a in arrays)

    fitted = replace(base, missed_growth=min(MISSED_GROWTHS, key=squared_error))
    return replace(fitted, calibration={**base.calibration, "scrambled_rates": list(SCRAMBLE_RATES),
                                        "f1_true": [round(a["true_f1"], 4) for a in arrays],
                                        "f1_estimated": [round(_estimated_f1(fitted, a), 4) for a in arrays]})


def _note_arrays(decoded: Sequence[DecodedNote], gold: Sequence[Sequence[tuple[int, int, str]]],
                 words: Sequence[Sequence[tuple[int, int, bool]]] | None = None) -> dict[str, Any]:
    """What calibration reads of notes the served model decoded (``decoded``; ``gold``: their entities as character
    spans; ``words``: each decoded word's span and whether it is out of the vocabulary, None: all known). Per
    predicted entity: ``scores``, ``sentence`` (its note's index), ``exact`` (a gold entity), ``overlap`` (overlaps
    a gold entity of its type), ``oov`` (has an unknown word); per note: ``mass`` (the D/T mass on its words
    tagged O), ``mass_oov`` (the part on unknown words), ``share`` (of unknown words); ``missed``: gold entities
    no prediction overlaps, with all words known and with an unknown word; ``true_f1``: strict entity F1."""
    scores, sentence, exact, overlap, oov, mass, mass_oov, share = [], [], [], [], [], [], [], []
    missed, expected = [0, 0], 0
    for index, (note, truth) in enumerate(zip(decoded, gold, strict=True)):
        spans = {tuple(g) for g in truth}
        note_words = words[index] if words is not None else [(0, 0, False)] * len(note.labels)
        touched = set()
        for entity in note.entities:
            hits = {g for g in spans if g[2] == entity["label"] and g[0] < entity["end"] and entity["start"] < g[1]}
            touched |= hits
            scores.append(entity["score"])
            sentence.append(index)
            exact.append((entity["start"], entity["end"], entity["label"]) in spans)
            overlap.append(bool(hits))
            oov.append(_has_unknown_word(note_words, entity["start"], entity["end"]))
        for start, end, _ in spans - touched:
            missed[_has_unknown_word(note_words, start, end)] += 1
        expected += len(spans)
        unknown = np.array([flag for _, _, flag in note_words], dtype=bool)
        outside = np.array([label == OUTSIDE for label in note.labels], dtype=bool)
        unsure = 1.0 - np.asarray(note.confidence, dtype=np.float64)
        mass.append(float(unsure[outside].sum()))
        mass_oov.append(float(unsure[outside & unknown].sum()))
        share.append(float(unknown.mean()) if len(unknown) else 0.0)
    predicted, correct = len(scores), sum(exact)
    return {"scores": np.asarray(scores, dtype=np.float64), "sentence": np.asarray(sentence, dtype=np.int64),
            "exact": np.asarray(exact, dtype=np.float64), "overlap": np.asarray(overlap, dtype=np.float64),
            "oov": np.asarray(oov, dtype=bool), "mass": np.asarray(mass), "mass_oov": np.asarray(mass_oov),
            "share": np.asarray(share), "missed": missed,
            "true_f1": entity_f1(correct, predicted, expected)}


def entity_f1(correct: float, predicted: float, gold: float) -> float:
    """Entity F1 from counts (expected ones too): 1.0 where there is nothing to find and nothing found."""
    return 2 * correct / (predicted + gold) if predicted + gold > 0 else 1.0


def scores_from_counts(correct: float, predicted: float, gold: float) -> dict[str, float]:
    """Entity F1, precision and recall from counts (expected ones too), to 4 decimals: 1.0 where nothing is to be
    divided (no entity predicted: precision; none to find: recall)."""
    return {"entity_f1": round(entity_f1(correct, predicted, gold), 4),
            "precision": round(correct / predicted, 4) if predicted > 0 else 1.0,
            "recall": round(correct / gold, 4) if gold > 0 else 1.0}


def _estimated_f1(estimator: Estimator, arrays: dict[str, Any]) -> float:
    """The estimated F1 of a set of sentences, as a window's (:func:`window_estimate`) would be."""
    entities, correct, gold = sentence_estimates(estimator, arrays["scores"], arrays["sentence"], arrays["mass"],
                                                 arrays["oov"], arrays["mass_oov"], arrays["share"]).sum(axis=0)
    return entity_f1(correct, entities, gold)


# --- a window ---------------------------------------------------------------------------------------------------

def column_distribution(view: DatasetProfileView, column: str) -> Any:
    """A column's whylogs distribution metric (count, mean, variance, sketch), or None when the profile has no such
    column or no values in it."""
    found = view.get_column(column)
    metric = found.get_metric("distribution") if found is not None else None
    return metric if metric is not None and metric.n > 0 else None


def _column_sum(view: DatasetProfileView, column: str) -> float | None:
    metric = column_distribution(view, column)
    return None if metric is None else float(metric.mean.value) * float(metric.n)


def window_estimate(view: DatasetProfileView | None) -> dict[str, float] | None:
    """The estimated ``entity_f1``, ``precision`` and ``recall`` of a (merged) profile, the ``entities`` predicted,
    and the ``support`` the F1 rests on (half its denominator: the mean of the entities predicted and expected to
    find, which its spread shrinks with); None when the profile carries no estimate (a model version exported
    without an estimator)."""
    if view is None:
        return None
    sums = [_column_sum(view, column) for column in ESTIMATE_COLUMNS]
    if any(value is None for value in sums):
        return None
    entities, correct, gold = sums
    return {**scores_from_counts(correct, entities, gold), "entities": round(entities),
            "support": round((entities + gold) / 2)}
