"""Entity-swap augmentation with the offline disease and drug dictionaries."""

from __future__ import annotations

from medner.augment import dictionary_names, entity_swapper
from medner.data import Sentence

SENTENCE = Sentence(("Patients", "with", "breast", "cancer", "took", "tamoxifen", "."),
                    ("O", "O", "D", "D", "O", "T", "O"))


def test_dictionaries_hold_disease_and_drug_names_split_like_the_corpus() -> None:
    diseases, drugs = set(dictionary_names("D")), set(dictionary_names("T"))
    assert ("breast", "neoplasms") in diseases and ("asthma",) in diseases
    assert ("tamoxifen",) in drugs and ("metformin",) in drugs
    assert not any(name[0] == "," or "," in name for name in diseases | drugs)  # no inverted "cancer, breast"


def test_swapped_entities_take_a_dictionary_name_and_keep_the_context() -> None:
    swapped = entity_swapper(seed=1)(SENTENCE, 1.0)
    spans = swapped.spans
    assert [s.label for s in spans] == ["D", "T"]
    disease, drug = (swapped.tokens[s.start:s.end] for s in spans)
    assert disease in set(dictionary_names("D")) and drug in set(dictionary_names("T"))
    assert swapped.tokens[:2] == ("Patients", "with") and swapped.tokens[-1] == "."
    assert swapped.tokens[spans[0].end] == "took"

    assert entity_swapper(seed=1)(SENTENCE, 1.0) == swapped  # one seed, one augmentation
    assert entity_swapper(seed=1)(SENTENCE, 0.0) is SENTENCE
    unlabelled = Sentence(("No", "entity", "here"), ("O", "O", "O"))
    assert entity_swapper(seed=1)(unlabelled, 1.0) is unlabelled
