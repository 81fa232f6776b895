from __future__ import annotations

import json
from pathlib import Path

import pytest

from medner.data import (
    DataFormatError,
    Sentence,
    read_annotations,
    read_behealthy,
    read_behealthy_pair,
    read_jsonl,
    split_dev,
    write_behealthy,
)


def write_pair(folder: Path, tokens: str, labels: str, stem: str = "train") -> tuple[Path, Path]:
    sent, label = folder / f"{stem}_sent", folder / f"{stem}_label"
    sent.write_bytes(tokens.encode() if isinstance(tokens, str) else tokens)
    label.write_text(labels)
    return sent, label


def test_reads_parallel_files(tmp_path: Path) -> None:
    sent, label = write_pair(tmp_path, "Acute\nasthma\n.\n\nAspirin\nhelps\n", "O\nD\nO\n\nT\nO\n")
    sentences = read_behealthy_pair(sent, label)
    assert sentences == [
        Sentence(("Acute", "asthma", "."), ("O", "D", "O")),
        Sentence(("Aspirin", "helps"), ("T", "O")),
    ]


def test_tolerates_crlf_missing_final_newline_and_repeated_blank_lines(tmp_path: Path) -> None:
    sent, label = write_pair(tmp_path, "a\r\nb\r\n\r\n\r\nc", "O\r\nD\r\n\r\n\r\nT")
    assert [s.labels for s in read_behealthy_pair(sent, label)] == [("O", "D"), ("T",)]


@pytest.mark.parametrize(
    ("tokens", "labels", "bad_file", "line", "fragment"),
    [
        ("a\nb\n\nc\n", "O\nD\n\nX\n", "label", 4, "unknown label 'X'"),
        ("a\n  \n\nc\n", "O\nD\n\nO\n", "sent", 2, "empty token"),
        ("a\nb c\n", "O\nO\n", "sent", 2, "whitespace inside a token"),
        ("a\nb\n\nc\nd\n", "O\nD\n\nO\n", "sent", 4, "2 tokens but the sentence at"),
        ("a\nb\n\nc\n", "O\nO\n", "sent", 4, "2 sentences but train_label has 1"),
        ("a\nb\n", "O\nO\n\nT\n", "label", 4, "1 sentences but train_label has 2"),
        (b"ok\n\xff\xfe\n", "O\nO\n", "sent", 2, "not UTF-8"),
        ("\n\n", "\n\n", "sent", None, "no sentences"),
    ],
)
def test_malformed_files_name_file_and_line(
    tmp_path: Path, tokens: str | bytes, labels: str, bad_file: str, line: int | None, fragment: str
) -> None:
    sent, label = write_pair(tmp_path, tokens, labels)
    with pytest.raises(DataFormatError) as info:
        read_behealthy_pair(sent, label)
    assert info.value.path == (sent if bad_file == "sent" else label)
    assert info.value.line == line
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{info.value.path}:{line}" if line else str(info.value.path))


def test_missing_corpus_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="medner data fetch"):
        read_behealthy(tmp_path)


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    sentences = [Sentence(("x", "y"), ("D", "D")), Sentence(("z",), ("O",))]
    write_behealthy(sentences, tmp_path, "test")
    assert read_behealthy_pair(tmp_path / "test_sent", tmp_path / "test_label") == sentences


def test_jsonl_records_become_word_labels(tmp_path: Path) -> None:
    path = tmp_path / "new.jsonl"
    text = "Metformin lowers HbA1c in type 2 diabetes."
    record = {"text": text, "entities": [{"start": 0, "end": 9, "label": "T"},
                                         {"start": 26, "end": 41, "label": "D"}]}
    path.write_text(json.dumps(record) + "\n\n")
    [sentence] = read_jsonl(path)
    assert sentence.tokens == ("Metformin", "lowers", "HbA1c", "in", "type", "2", "diabetes", ".")
    assert sentence.labels == ("T", "O", "O", "O", "D", "D", "D", "O")
    assert read_annotations(path) == [sentence]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("{not json", "invalid JSON"),
        ('{"entities": []}', 'string "text"'),
        ('{"text": "a b", "entities": {}}', "must be a list"),
        ('{"text": "a b", "entities": [{"start": 0, "end": 9, "label": "D"}]}', "0 <= start < end <= 3"),
        ('{"text": "a b", "entities": [{"start": 0, "end": 1, "label": "X"}]}', "label 'X'"),
        ('{"text": "ab c", "entities": [{"start": 0, "end": 1, "label": "D"}]}', "word boundaries"),
        ('{"text": "a b", "entities": [{"start": 0, "end": 3, "label": "D"}, '
         '{"start": 2, "end": 3, "label": "T"}]}', "overlap"),
        ('{"text": "  "}', "no words"),
    ],
)
def test_malformed_jsonl_names_the_line(tmp_path: Path, line: str, fragment: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine", "entities": []}\n' + line + "\n")
    with pytest.raises(DataFormatError, match=fragment) as info:
        read_jsonl(path)
    assert (info.value.path, info.value.line) == (path, 2)


def test_unknown_annotation_format(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="unknown format"):
        read_annotations(tmp_path / "notes.csv")


def test_dev_split_is_deterministic_and_disjoint() -> None:
    sentences = [Sentence((str(i),), ("O",)) for i in range(100)]
    train, dev = split_dev(sentences, 0.1, seed=7)
    assert len(dev) == 10 and len(train) == 90
    assert set(train).isdisjoint(dev)
    assert split_dev(sentences, 0.1, seed=7) == (train, dev)
    assert split_dev(sentences, 0.1, seed=8)[1] != dev
    with pytest.raises(ValueError):
        split_dev(sentences, 1.5)
