from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from medner.inference import (
    NerPipeline,
    SoloCores,
    WordPieceTokenizer,
    extract,
    gather_notes,
    gpu_providers,
    ort_encoder,
    predict_sentences,
    sentence_log_probs,
    tokenize_notes,
    torch_encoder,
)
from medner.inference.encoders import GPU_PROVIDERS
from medner.model_io import load_model


@pytest.fixture(scope="module")
def tokenizer_and_model(untrained_model_dir: Path):
    return load_model(untrained_model_dir)


def test_long_notes_are_windowed_without_losing_a_word(tokenizer_and_model) -> None:
    tokenizer, _ = tokenizer_and_model
    note = " ".join(f"hyperlipidaemia{i % 7} treated," for i in range(300))
    batch = tokenize_notes(tokenizer, [note, "short note", ""], max_length=64, stride=16)
    long_note, short, empty = batch.notes
    assert long_note.n_windows > 10 and short.n_windows == 1 and empty.n_windows == 1
    assert batch.input_ids.shape[1] <= 64
    assert (long_note.word_window >= 0).all()  # every word has a scoring word-piece
    for row in range(long_note.first_row, long_note.first_row + long_note.n_windows):
        length = batch.attention_mask[row].sum()
        assert batch.input_ids[row, 0] == tokenizer.cls_token_id
        assert batch.input_ids[row, length - 1] == tokenizer.sep_token_id
    # the scoring piece of each word is that word's first piece
    for w in (0, 1, 150, len(long_note.words) - 1):
        row = long_note.first_row + long_note.word_window[w]
        piece = tokenizer.convert_ids_to_tokens(int(batch.input_ids[row, long_note.word_position[w]]))
        start, end = long_note.words[w]
        assert note[start:end].lower().startswith(piece)


def test_stride_must_leave_room(tokenizer_and_model) -> None:
    with pytest.raises(ValueError, match="stride"):
        tokenize_notes(tokenizer_and_model[0], ["x"], max_length=16, stride=14)


def test_word_scores_come_from_first_pieces_and_missing_words_get_o(tokenizer_and_model) -> None:
    tokenizer, model = tokenizer_and_model
    sentences = [["Asthma", "\u200b", "unbelievably", "treated"]]  # a zero-width space has no word-piece
    [log_probs] = sentence_log_probs(sentences, tokenizer, torch_encoder(model))
    assert log_probs.shape == (4, 5) and log_probs[1].argmax() == 0 and log_probs[1, 0] == 0.0
    assert np.allclose(np.exp(log_probs).sum(axis=1), 1.0, atol=1e-3)
    # the same numbers computed independently: Hugging Face's word_ids() and the model on the whole sentence
    import torch

    from medner.decoding import decode

    encoded = tokenizer(sentences[0], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoded).logits[0]
    word_ids = encoded.word_ids(0)
    expected = np.full((4, 5), -30.0)
    expected[:, 0] = 0.0  # a word with no word-piece: O for certain
    with_pieces = [w for w in range(4) if w in word_ids]
    for w in with_pieces:
        expected[w] = torch.log_softmax(logits[word_ids.index(w)], dim=-1).numpy()
    assert with_pieces == [0, 2, 3] and np.allclose(log_probs[with_pieces], expected[with_pieces], atol=1e-4)
    assert predict_sentences(sentences, tokenizer, torch_encoder(model), batch_size=1) == [decode(expected)]


def test_entities_slice_the_original_text(tokenizer_and_model) -> None:
    tokenizer, model = tokenizer_and_model
    notes = ["Asthma,  treated with\tinhaled steroids (2x daily).\nNo rash.", "Ωmega-3 für Diabetes — 😀 ok",
             " " * 5, "word " * 700]
    results = extract(notes, tokenizer, torch_encoder(model), max_length=128, stride=32)
    assert len(results) == 4 and results[2] == []
    for note, entities in zip(notes, results):
        for e in entities:
            assert note[e["start"]:e["end"]] == e["text"] and e["label"] in ("D", "T")
            assert 0 < e["score"] <= 1


def test_gather_notes_refuses_a_request_with_a_bad_note_and_keeps_the_others() -> None:
    batch = gather_notes([["first note", "second note"], [b"\xff bad"], ["third"], ["  "]], max_chars=100)
    assert batch.notes == ["first note", "second note", "third"]
    assert batch.slices == [(0, 0, 2), (2, 2, 1)]
    assert set(batch.errors) == {1, 3} and "UTF-8" in batch.errors[1] and "empty" in batch.errors[3]
    assert "bad" not in batch.errors[1]  # messages never quote the note


def test_a_word_longer_than_a_window_at_a_sentence_end(tokenizer_and_model) -> None:
    """Regression (found by benchmarks/fuzz.py): a last word of more pieces than a window (a CJK run, a long
    hyphenated chain) made the next-window search run off the end of the word starts (IndexError)."""
    tokenizer, _ = tokenizer_and_model
    notes = ["患" * 200, "x " + "患" * 200, "x " + "-".join(["ab"] * 100), "asthma " + "患" * 300 + ". tamoxifen"]
    batch = tokenize_notes(tokenizer, notes, max_length=64, stride=16)
    for note in batch.notes:
        assert note.n_windows > 1 and (note.word_window >= 0).all()  # every word scored from some window
    assert batch.input_ids.shape[1] <= 64


def _narrow(input_ids, attention_mask):  # stand-ins: only which encoder is chosen matters here
    raise AssertionError("not called")


def _solo(input_ids, attention_mask):
    raise AssertionError("not called")


def wait_until_a_lock_waits_on(path: Path) -> None:
    """Return once the kernel lists a process blocked on a lock of ``path`` (``/proc/locks`` marks waiters
    with ``->``): the event itself, not a guess at how long it takes."""
    inode = os.stat(path).st_ino
    while not any(fields[1] == "->" and fields[6].endswith(f":{inode}")
                  for fields in (line.split() for line in Path("/proc/locks").read_text().splitlines())
                  if len(fields) > 6):
        time.sleep(0.01)


def test_a_small_call_runs_solo_only_while_no_other_instance_runs(tmp_path: Path) -> None:
    first, second = (SoloCores(tmp_path, _narrow, _solo, max_chars=20) for _ in range(2))  # two instances
    with first.encoder(["a short note"]) as encoder:
        assert encoder is _solo
        chosen: list = []

        def small_call() -> None:
            with second.encoder(["another note"]) as encoder:
                chosen.append(encoder)

        waiting = threading.Thread(target=small_call)
        waiting.start()
        wait_until_a_lock_waits_on(tmp_path)  # a narrow run waits for the solo one: it holds every core
        assert chosen == []
    waiting.join()
    assert chosen == [_narrow]
    with first.encoder(["x" * 21]) as encoder:  # too long for solo: narrow, and no other call waits for it
        assert encoder is _narrow
        with second.encoder(["short"]) as other:
            assert other is _narrow  # another instance is running
    with second.encoder(["short"]) as encoder:
        assert encoder is _solo  # alone again


def test_solo_runs_tag_like_narrow_ones(exported_repository: Path) -> None:
    from medner.triton_control import config_parameters
    from tests.notes import NOTES

    parameters = config_parameters(exported_repository / "ner" / "config.pbtxt")
    parameters.update(threads="1", solo_threads="2", solo_max_chars="2000")
    version = next(p for p in (exported_repository / "ner").iterdir() if p.name.isdigit())
    solo = NerPipeline(version, parameters)
    narrow = NerPipeline(version, {**parameters, "solo_threads": "1"})
    assert solo.solo is not None and narrow.solo is None
    short = [n for n in NOTES if len(n) < 500][:4]
    assert short and solo(short) == narrow(short)


def test_word_piece_tokenizer_windows_equal_transformers_ones(untrained_model_dir: Path, tokenizer_and_model) -> None:
    hf_tokenizer, _ = tokenizer_and_model
    notes = ["Asthma treated with salbutamol.", "Café-au-lait spots; naïve Ünïcödé \u200b tab\there", "",
             " ".join(f"hyperlipidaemia{i}" for i in range(200)), "日本語 ＡＢＣ ﬁ ligature", "x" * 300]
    hf_tokenizer(["a b c d e f g h i j"], truncation=True, max_length=4)  # leaves truncation set on its backend
    ours = WordPieceTokenizer.from_dir(untrained_model_dir)
    assert (ours.cls_token_id, ours.sep_token_id, ours.pad_token_id, ours.unk_token_id) == (
        hf_tokenizer.cls_token_id, hf_tokenizer.sep_token_id, hf_tokenizer.pad_token_id, hf_tokenizer.unk_token_id)
    for tokenizer in (WordPieceTokenizer.of(hf_tokenizer), hf_tokenizer):  # the training path is untruncated too
        got, want = (tokenize_notes(t, notes, max_length=64, stride=16) for t in (ours, tokenizer))
        assert np.array_equal(got.input_ids, want.input_ids)
        assert np.array_equal(got.attention_mask, want.attention_mask)
        for a, b in zip(got.notes, want.notes, strict=True):
            assert a.words == b.words and a.pieces == b.pieces
            assert np.array_equal(a.word_window, b.word_window) and np.array_equal(a.word_position, b.word_position)
    whole = hf_tokenizer([notes[3].split()], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]
    assert got.notes[3].pieces == len(whole) > 64  # not cut at the 4 pieces the last call asked for


def test_word_piece_tokenizer_needs_cls_and_sep(untrained_model_dir: Path, tmp_path: Path) -> None:
    for name in ("tokenizer.json", "vocab.txt"):
        shutil.copy2(untrained_model_dir / name, tmp_path / name)
    (tmp_path / "special_tokens_map.json").write_text('{"cls_token": "[NOT-IN-VOCAB]", "sep_token": "[SEP]"}')
    with pytest.raises(ValueError, match="no \\[CLS\\] or \\[SEP\\]"):
        WordPieceTokenizer.from_dir(tmp_path)


def test_a_served_version_decodes_with_its_span_edges(exported_repository: Path) -> None:
    from medner.decoding import SpanEdges
    from medner.spans import split_words
    from medner.triton_control import config_parameters

    version = exported_repository / "ner" / "1"
    pipeline = NerPipeline(version, config_parameters(exported_repository / "ner" / "config.pbtxt"))
    assert pipeline.edges == SpanEdges.load(version) != SpanEdges()
    notes = ["Patients with asthma were treated with inhaled steroids .", "Tamoxifen reduced symptoms of migraine ."]
    assert any(pipeline(notes))  # the untrained head tags something
    words = {note[s:e].lower() for note in notes for s, e in split_words(note)}
    pipeline.edges = SpanEdges(never_first=frozenset(words))  # no word may start an entity
    assert pipeline(notes) == [[], []]
    _, decoded = pipeline.decoded(notes)
    assert [d.entities for d in decoded] == [[], []]


def test_a_crf_model_s_confidences_are_its_marginals_sentence_by_sentence(tokenizer_and_model) -> None:
    """A model trained with a CRF layer scores each word by its sequence model, each sentence apart, as Viterbi
    decodes it (all notes' sentences at once, as each alone); a model without one by the word's own distribution."""
    from medner.decoding import SpanEdges, marginals
    from medner.inference import decode_notes, encode_sorted, note_rows, note_word_log_probs
    from medner.labels import BIO_TAGS

    tokenizer, model = tokenizer_and_model
    notes = ["Asthma was treated with steroids . Migraine persisted despite tamoxifen .",
             "Tamoxifen reduced symptoms of chronic migraine in most adults ."]
    batch = tokenize_notes(tokenizer, notes)
    logits = encode_sorted(batch.input_ids, batch.attention_mask, torch_encoder(model), 8)
    note_logits = [note_rows(logits, layout) for layout in batch.notes]
    log_probs = [note_word_log_probs(layout, rows) for layout, rows in zip(batch.notes, note_logits)]
    plain = decode_notes(notes, batch.notes, note_logits, edges=SpanEdges())
    for note, scores in zip(plain, log_probs):
        np.testing.assert_allclose(note.confidence, np.exp(scores.max(axis=1)), rtol=1e-6)

    stay = np.array([[3.0 if a == b else 0.0 for b in range(len(BIO_TAGS))] for a in range(len(BIO_TAGS))])
    learned = (np.zeros(len(BIO_TAGS)), stay)  # a tag tends to go on: far from the words' own distributions
    crf = decode_notes(notes, batch.notes, note_logits, edges=SpanEdges().with_learned(*learned))
    assert [[b - a for a, b in layout.sentences] for layout in batch.notes] == [[6, 5], [10]]
    for note, plain_note, layout, scores in zip(crf, plain, batch.notes, log_probs):
        expected = np.concatenate([np.exp(marginals([scores[a:b]], learned)[0].max(axis=1))
                                   for a, b in layout.sentences])
        np.testing.assert_allclose(note.confidence, expected, rtol=1e-6)
        assert np.abs(note.confidence - plain_note.confidence).max() > 0.05
        for entity in note.entities:
            words = [i for i, (s, e) in enumerate(layout.words) if entity["start"] <= s < entity["end"]]
            assert entity["score"] == pytest.approx(expected[words].mean(), abs=1e-4)


def test_a_note_s_uncertainty_is_the_likeliest_name_left_o() -> None:
    from medner.inference import DecodedNote

    doubtful_entity_doubtful_o = DecodedNote(["D", "O", "O"], np.array([0.40, 0.55, 0.99]), [])
    assert doubtful_entity_doubtful_o.uncertainty == pytest.approx(0.45)  # the O word's, not the entity's 0.60
    assert DecodedNote(["T", "T"], np.array([0.5, 0.6]), []).uncertainty == 0.0  # no word left O
    assert DecodedNote([], np.array([]), []).uncertainty == 0.0


def test_an_encoder_asked_for_a_gpu_fails_loudly_where_none_works(exported_repository: Path) -> None:
    """The GPU configs' encoder (ner_encoder/model.py, device gpu) must not run on the CPU unnoticed: on this
    machine's CPU-only onnxruntime the session it creates runs no GPU provider, so creating it fails; asked for the
    CPU, the same graph encodes."""
    import onnxruntime as ort

    onnx = exported_repository / "ner_encoder" / "1" / "model.onnx"
    assert not set(ort.get_available_providers()) & set(GPU_PROVIDERS)  # the premise: no GPU provider here
    with pytest.raises(RuntimeError, match="a GPU was asked for and no GPU execution provider works here"):
        ort_encoder(onnx, providers=gpu_providers(), require_gpu=True)
    ids = np.ones((1, 8), dtype=np.int64)
    assert ort_encoder(onnx, providers=gpu_providers())(ids, ids).shape[:2] == (1, 8)


def test_the_serving_path_runs_without_the_training_set(exported_repository: Path) -> None:
    """The serving image installs medner[serve] only (deploy/Dockerfile): what `medner serve` and the served models
    import must work with torch, transformers, Metaflow, scikit-learn and matplotlib absent."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'metaflow', 'sklearn', 'matplotlib'): sys.modules[name] = None\n"
        "import medner.cli.serve, medner.follow, medner.triton, medner.promotion, monitoring.features, "
        "monitoring.profiles\n"
        "from medner.inference import NerPipeline\n"
        f"pipeline = NerPipeline({str(exported_repository / 'ner' / '1')!r}, {{}})\n"
        "print(len(pipeline.decoded(['Asthma was treated with inhaled steroids.'])[1]))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "1", result.stderr[-2000:]
