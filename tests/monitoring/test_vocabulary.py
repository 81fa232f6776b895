from monitoring.vocabulary import Vocabulary, is_misspelling

VOCABULARY = Vocabulary({"asthma", "treated", "with", "ibuprofen", "cough", "tumor", "is", "."})


def test_a_misspelling_is_one_edit_from_a_word_of_four_letters_or_more() -> None:
    for typed in ("astma", "asthmma", "atshma", "asthna", "ibuprofne", "coughh", "tumors"):
        assert is_misspelling(typed, VOCABULARY), typed  # dropped, doubled, swapped, replaced; a plural too
    for word in ("asthma", "metformin", "fever", "ashtmatic", "it", "iss", "ast", "0000", "cough-0"):
        assert not is_misspelling(word, VOCABULARY), word  # seen, unrelated, two edits, short, not letters
