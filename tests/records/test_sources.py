"""Listing, sharding and reading an archive of notes: a folder, JSONL files, an S3 prefix (a moto server); bad
input named by file and line, never by its text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from records.sources import InputError, NoteInputError, cut_shards, list_notes, read_notes
from tests.aws import TEST_CREDENTIALS, aws

SECRET = "Mrs Example has lupus"  # note text that must never appear in an error


def _archive(folder: Path) -> Path:
    (folder / "clinic_a").mkdir(parents=True)
    (folder / "clinic_a" / "one.txt").write_text("Asthma treated with steroids.")
    (folder / "two.txt").write_text("Migraine.\nSecond line.")
    lines = [json.dumps({"id": "j1", "text": "Tamoxifen for breast cancer."}), "",
             json.dumps({"text": "no id here"}), json.dumps({"id": "j4", "note": SECRET}), "{not json " + SECRET,
             json.dumps({"id": "j1", "text": SECRET}), json.dumps({"id": 7, "text": "Metformin."})]
    (folder / "batch.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "ignored.csv").write_text("not a note")
    return folder


def test_a_folder_lists_txt_and_jsonl_notes_with_their_ids(tmp_path: Path) -> None:
    refs = list_notes(str(_archive(tmp_path / "in")))
    assert [r.note_id for r in refs] == ["j1", "batch.jsonl:3", "j4", "batch.jsonl:5", "j1", "7",
                                         "clinic_a/one.txt", "two.txt"]
    read = dict(((r.note_id, r.line), payload) for r, payload in read_notes(refs))
    assert read["j1", 1] == b"Tamoxifen for breast cancer." and read["7", 7] == b"Metformin."
    assert read["clinic_a/one.txt", 0] == b"Asthma treated with steroids."
    assert read["two.txt", 0] == b"Migraine.\nSecond line."  # a .txt file is one note, lines and all
    errors = {key: str(value) for key, value in read.items() if isinstance(value, NoteInputError)}
    assert set(errors) == {("j4", 4), ("batch.jsonl:5", 5), ("j1", 6)}
    assert errors["j4", 4].endswith('batch.jsonl:4: no "text" string in this line')
    assert "batch.jsonl:5: not a JSON object" in errors["batch.jsonl:5", 5]
    assert errors["j1", 6].endswith("batch.jsonl:6: repeats the id of line 1")
    assert not any(SECRET in message or "lupus" in message for message in errors.values())


def test_shards_hold_at_most_their_notes_and_bytes_in_order(tmp_path: Path) -> None:
    refs = list_notes(str(_archive(tmp_path / "in")))
    by_count = cut_shards(refs, max_notes=3)
    assert [len(s) for s in by_count] == [3, 3, 2] and [r for s in by_count for r in s] == refs
    by_bytes = cut_shards(refs, max_notes=100, max_bytes=60)
    assert all(sum(r.size for r in s) <= 60 or len(s) == 1 for s in by_bytes) and len(by_bytes) > 1
    assert [r for s in by_bytes for r in s] == refs
    with pytest.raises(ValueError):
        cut_shards(refs, max_notes=0)


def test_input_without_notes_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        list_notes(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .txt or .jsonl files"):
        list_notes(str(tmp_path / "empty"))


def test_an_s3_prefix_is_listed_and_read_like_a_folder(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    s3 = aws(moto_endpoint, "s3")
    s3.create_bucket(Bucket="archive")
    local = _archive(tmp_path / "in")
    for path in local.rglob("*"):
        if path.is_file():
            s3.put_object(Bucket="archive", Key=f"2026/{path.relative_to(local).as_posix()}", Body=path.read_bytes())

    remote = list_notes("s3://archive/2026")
    assert [(r.note_id, r.line) for r in remote] == [(r.note_id, r.line) for r in list_notes(str(local))]
    assert remote[0].location == "s3://archive/2026/batch.jsonl"
    def contents(refs: list) -> list:  # notes, and errors without the location that names them
        return [p if isinstance(p, bytes) else str(p).rsplit(".jsonl", 1)[1] for _, p in read_notes(refs)]

    assert contents(remote) == contents(list_notes(str(local)))

    with pytest.raises(InputError, match="no .txt or .jsonl objects under this prefix"):
        list_notes("s3://archive/1999")
    with pytest.raises(InputError, match="NoSuchBucket"):
        list_notes("s3://no-such-bucket/notes")


def test_a_note_s_group_is_its_line_s_group_else_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "cardiology").mkdir(parents=True)
    (folder / "Not A Label").mkdir()
    (folder / "cardiology" / "a.txt").write_text("Angina.")
    (folder / "Not A Label" / "b.txt").write_text("Asthma.")  # extracted all the same, without a group
    (folder / "top.txt").write_text("Gout.")
    (folder / "cardiology" / "more.jsonl").write_text(
        json.dumps({"id": "1", "text": "Migraine.", "group": "neurology"}) + "\n"
        + json.dumps({"id": "2", "text": "Angina."}) + "\n"
        + json.dumps({"id": "3", "text": "Gout.", "group": SECRET}) + "\n")
    refs = {r.note_id: r for r in list_notes(str(folder))}
    assert {k: r.group for k, r in refs.items()} == {
        "Not A Label/b.txt": None, "cardiology/a.txt": "cardiology", "1": "neurology", "2": "cardiology", "3": None,
        "top.txt": None}
    read = {ref.note_id: payload for ref, payload in read_notes(list(refs.values()))}
    assert isinstance(read["3"], NoteInputError) and 'its "group" is not a group label' in str(read["3"])
    assert SECRET not in str(read["3"]) and read["Not A Label/b.txt"] == b"Asthma."
