"""The accuracy ablation's entity vote over a seed ensemble's members (benchmarks/accuracy.py)."""

import numpy as np

from benchmarks.accuracy import entity_vote
from medner.data import Sentence
from medner.labels import BIO_TAGS, to_bio

WORDS = ("chronic", "renal", "failure", "treated", "with", "dialysis")


def member(labels: list[str]) -> np.ndarray:
    """Log-probabilities whose Viterbi path is exactly ``labels`` (O/D/T): the tag near 1, the others near 0."""
    rows = np.full((len(labels), len(BIO_TAGS)), np.log(1e-4))
    for row, tag in zip(rows, to_bio(labels)):
        row[BIO_TAGS.index(tag)] = np.log(1 - 1e-4 * (len(BIO_TAGS) - 1))
    return rows


def test_entity_vote_keeps_the_entities_most_members_predict():
    sentence = Sentence(WORDS, ("D", "D", "D", "O", "O", "T"))
    members = [[member(["D", "D", "D", "O", "O", "T"])],
               [member(["D", "D", "D", "O", "O", "D"])],   # dialysis as a disease: outvoted
               [member(["O", "D", "D", "O", "O", "O"])]]   # a shorter span: outvoted, and dialysis missed
    # "chronic renal failure" D: 2 of 3; "renal failure" D: 1; "dialysis" T: 1, D: 1 -> no entity there
    assert entity_vote(members, [sentence]) == [["D", "D", "D", "O", "O", "O"]]


def test_entity_vote_of_two_members_needs_both():
    sentence = Sentence(WORDS, ("O",) * len(WORDS))
    members = [[member(["O", "O", "O", "O", "O", "T"])], [member(["O", "O", "O", "O", "O", "T"])]]
    assert entity_vote(members, [sentence]) == [["O", "O", "O", "O", "O", "T"]]
    members[1] = [member(["O"] * len(WORDS))]
    assert entity_vote(members, [sentence]) == [["O"] * len(WORDS)]


def test_a_collapsed_run_is_left_out_of_the_ensembles(tmp_path, monkeypatch):
    import json

    from benchmarks import accuracy

    monkeypatch.setattr(accuracy, "RUNS", tmp_path)
    monkeypatch.setattr(accuracy, "LOG_PROBS", tmp_path / "log_probs")
    (tmp_path / "log_probs").mkdir()
    for seed, dev_f1 in ((13, 0.74), (14, 0.0), (15, 0.73), (16, 0.75), (17, 0.72)):  # 14 tags nothing
        accuracy.run_file("cand", seed).write_text(json.dumps({"seed": seed, "dev": {"entity_f1": dev_f1}}))
        (tmp_path / "log_probs" / f"cand-s{seed}.npz").write_bytes(b"")
    # 13, 15, 16 make an ensemble; 17 alone is too few for one
    assert [accuracy.seeds_of(group) for group in accuracy.ensemble_groups("cand")] == [[13, 15, 16]]


def test_a_soup_is_the_tensor_by_tensor_mean_of_its_models(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from benchmarks.accuracy import SOUP_WEIGHTS, average_weights

    folders = []
    for k, (weight, steps) in enumerate(((1.0, 2), (2.0, 4), (6.0, 9))):
        folder = tmp_path / f"m{k}"
        folder.mkdir()
        save_file({"weight": torch.full((2, 3), weight), "steps": torch.tensor([steps], dtype=torch.int64)},
                  folder / SOUP_WEIGHTS)
        (folder / "config.json").write_text(f'{{"member": {k}}}')
        folders.append(folder)
    soup = load_file(average_weights(folders, tmp_path / "soup") / SOUP_WEIGHTS)
    assert torch.equal(soup["weight"], torch.full((2, 3), 3.0))
    assert soup["steps"].dtype == torch.int64 and soup["steps"].item() == 5  # (2 + 4 + 9) / 3, kept an integer
    assert (tmp_path / "soup" / "config.json").read_text() == '{"member": 0}'  # the rest: the first model's files
