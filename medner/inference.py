"""The serving hot path, shared by Triton's python models, the in-process client and export checks:

    notes --tokenize_notes--> windows of word-pieces --(encoder)--> logits --decode_note--> entities

Notes of any length are split into words and sentences (:mod:`medner.spans`), tokenised in one
batched call, and encoded one sentence per window, as the tagger was trained; a sentence longer
than ``max_length`` word-pieces is cut into overlapping windows on word boundaries, so nothing is
truncated. Each word is scored by its first word-piece in the window where it
sits furthest from an edge; the note is then decoded with :func:`medner.decoding.decode`, the decoder
training is evaluated with.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from medner.decoding import decode
from medner.labels import BIO_TAGS
from medner.spans import join_tokens, labels_to_spans, split_sentences, split_words

DEFAULT_MAX_LENGTH = 128  # fine-tuning saw single sentences: positions past ~128 are untrained
DEFAULT_STRIDE = 32  # word-pieces shared by neighbouring windows of one long sentence
DEFAULT_MAX_NOTE_CHARS = 100_000  # ~15,000 words; measured: a 100,000-character note takes ~23 s on one thread
DEFAULT_MICRO_BATCH = 64  # most windows per length bucket


class Entity(TypedDict):
    label: str
    start: int
    end: int
    text: str
    score: float


class WordPieceTokenizer:
    """An exported model's word-piece tokenizer (``tokenizer.json``), read with the ``tokenizers`` library
    alone: importing ``transformers`` costs seconds in every process that serves a model (each Triton model
    instance, each ``medner extract --local``), and the hot path needs only word-piece ids, the word each
    piece belongs to, and four special-token ids (results/tokenizer.md compares the two)."""

    def __init__(self, backend: Any, cls_token_id: int, sep_token_id: int, pad_token_id: int | None,
                 unk_token_id: int | None):
        self.backend = backend  # a tokenizers.Tokenizer
        self.cls_token_id, self.sep_token_id = cls_token_id, sep_token_id
        self.pad_token_id, self.unk_token_id = pad_token_id, unk_token_id

    @classmethod
    def from_dir(cls, folder: Path | str) -> WordPieceTokenizer:
        """The tokenizer ``save_pretrained`` wrote to ``folder``: tokenizer.json, and the special tokens named in
        tokenizer_config.json or special_tokens_map.json."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        special: dict[str, Any] = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (folder / name).exists():
                special.update(json.loads((folder / name).read_text()))

        def token_id(name: str) -> int | None:
            token = special.get(name)
            return backend.token_to_id(token["content"] if isinstance(token, dict) else token) if token else None

        cls_id, sep_id = token_id("cls_token"), token_id("sep_token")
        if cls_id is None or sep_id is None:
            raise ValueError(f"{folder}: the tokenizer files name no [CLS] or [SEP] token of its vocabulary")
        return cls(backend, cls_id, sep_id, token_id("pad_token"), token_id("unk_token"))

    @classmethod
    def of(cls, tokenizer: Any) -> WordPieceTokenizer:
        """``tokenizer`` itself, or the word-piece model inside a ``transformers`` fast tokenizer (training)."""
        if isinstance(tokenizer, cls):
            return tokenizer
        return cls(tokenizer.backend_tokenizer, tokenizer.cls_token_id, tokenizer.sep_token_id,
                   tokenizer.pad_token_id, tokenizer.unk_token_id)

    def encode_words(self, word_texts: Sequence[Sequence[str]]) -> list[Any]:
        """One ``tokenizers.Encoding`` per note (``.ids``, ``.word_ids``), whole: long notes are windowed later."""
        # a transformers tokenizer leaves its last call's truncation or padding set on the backend
        if self.backend.truncation is not None:
            self.backend.no_truncation()
        if self.backend.padding is not None:
            self.backend.no_padding()
        return self.backend.encode_batch([list(w) for w in word_texts], is_pretokenized=True,
                                         add_special_tokens=False)


@dataclass
class NoteWindows:
    """One note, tokenised: its words and its windows (rows of the encoder batch)."""

    words: list[tuple[int, int]]  # character offsets of each word in the note
    first_rows: int  # index of this note's first window in the batch
    n_windows: int
    # per word: (window row relative to first_rows, position in that window) of its scoring word-piece
    word_window: np.ndarray
    word_position: np.ndarray
    pieces: int = 0  # word-pieces of the note (windows overlap, so not the sum of their lengths)


@dataclass
class TokenizedBatch:
    input_ids: np.ndarray  # (windows, seq) int64, padded with the tokenizer's pad id
    attention_mask: np.ndarray  # (windows, seq) int64
    notes: list[NoteWindows]


def _window_bounds(first_piece: np.ndarray, n_pieces: int, body: int, stride: int) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` over a note's word-pieces, at most ``body`` long, cut at word starts."""
    if n_pieces <= body:
        return [(0, n_pieces)]
    bounds, start = [], 0
    while True:
        end = start + body
        if end >= n_pieces:
            bounds.append((start, n_pieces))
            return bounds
        cut = first_piece[np.searchsorted(first_piece, end, side="right") - 1]
        end = cut if cut > start else end  # a single word longer than a window is cut mid-word
        bounds.append((start, end))
        # the first word starting in the last ``stride`` pieces; none when a long last word fills them
        following = np.searchsorted(first_piece, end - stride, side="left")
        next_start = first_piece[following] if following < len(first_piece) else end
        start = next_start if start < next_start < end else end


def tokenize_notes(
    tokenizer: Any, notes: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH, stride: int = DEFAULT_STRIDE
) -> TokenizedBatch:
    """Split raw notes into words and word-piece windows, ready for the encoder."""
    words = [split_words(note) for note in notes]
    return tokenize_words(tokenizer, [[n[s:e] for s, e in w] for n, w in zip(notes, words)], words,
                          max_length, stride, [split_sentences(n, w) for n, w in zip(notes, words)])


def tokenize_words(
    tokenizer: Any,
    word_texts: Sequence[Sequence[str]],
    word_offsets: Sequence[Sequence[tuple[int, int]]],
    max_length: int = DEFAULT_MAX_LENGTH,
    stride: int = DEFAULT_STRIDE,
    sentences: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> TokenizedBatch:
    """Word-piece windows, by ``tokenizer`` (a :class:`WordPieceTokenizer` or a ``transformers`` fast tokenizer),
    for notes already split into words (``word_offsets``: their character offsets) and, optionally, sentences
    (word ranges; default: the whole note is one sentence)."""
    if not 0 <= stride < max_length - 2:
        raise ValueError(f"stride must be in [0, {max_length - 2}), got {stride}")
    body = max_length - 2  # room for [CLS] ... [SEP]
    tokenizer = WordPieceTokenizer.of(tokenizer)
    encoded = tokenizer.encode_words(word_texts)
    rows: list[list[int]] = []
    layouts = []
    for index, note_words in enumerate(word_offsets):
        ids = np.asarray(encoded[index].ids, dtype=np.int64)
        word_ids = np.array([-1 if w is None else w for w in encoded[index].word_ids], dtype=np.int64)
        is_first = np.ones(len(word_ids), dtype=bool)
        is_first[1:] = word_ids[1:] != word_ids[:-1]
        first_piece = np.flatnonzero(is_first)
        # piece_start[w]: first word-piece of word w (of the next word, for words with no piece)
        piece_start = np.full(len(note_words) + 1, len(ids), dtype=np.int64)
        piece_start[word_ids[first_piece]] = first_piece
        piece_start = np.minimum.accumulate(piece_start[::-1])[::-1]
        bounds = []
        for first_word, end_word in sentences[index] if sentences is not None else [(0, len(note_words))]:
            start, end = int(piece_start[first_word]), int(piece_start[end_word])
            if end > start:
                inner = first_piece[(first_piece >= start) & (first_piece < end)] - start
                bounds += [(start + a, start + b) for a, b in _window_bounds(inner, end - start, body, stride)]
        bounds = bounds or [(0, 0)]
        word_window = np.full(len(note_words), -1, dtype=np.int64)
        word_position = np.zeros(len(note_words), dtype=np.int64)
        best_margin = np.full(len(note_words), -1, dtype=np.int64)
        for k, (start, end) in enumerate(bounds):
            rows.append([tokenizer.cls_token_id, *ids[start:end].tolist(), tokenizer.sep_token_id])
            positions = first_piece[(first_piece >= start) & (first_piece < end)]
            owners = word_ids[positions]
            margin = np.minimum(positions - start, end - 1 - positions)
            better = margin > best_margin[owners]
            best_margin[owners[better]] = margin[better]
            word_window[owners[better]] = k
            word_position[owners[better]] = positions[better] - start + 1  # +1 for [CLS]
        layouts.append(NoteWindows(list(note_words), len(rows) - len(bounds), len(bounds), word_window,
                                   word_position, len(ids)))
    width = max((len(r) for r in rows), default=2)
    input_ids = np.full((len(rows), width), tokenizer.pad_token_id or 0, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        input_ids[r, : len(row)] = row
        attention_mask[r, : len(row)] = 1
    return TokenizedBatch(input_ids, attention_mask, layouts)


class NoteError(ValueError):
    """A note the service cannot take (not UTF-8, empty, too long); the message says which."""


def validate_note(note: str | bytes, max_chars: int = DEFAULT_MAX_NOTE_CHARS) -> str:
    """The note as text, or NoteError. Messages never quote the note (clinical text stays private)."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as err:
            raise NoteError(f"note is not valid UTF-8 (byte {err.start})") from None
    if not note.strip():
        raise NoteError("note is empty")
    if len(note) > max_chars:
        raise NoteError(f"note has {len(note)} characters; the limit is {max_chars}")
    return note


@dataclass
class RequestNotes:
    """The notes of a batch of requests in one list, for one batched call."""

    notes: list[str]  # every valid note, request after request
    spans: list[tuple[int, int, int]]  # (request index, its first note in ``notes``, its note count)
    errors: dict[int, str]  # request index -> why it was refused (a request with one bad note fails whole)


def gather_notes(requests: Sequence[Sequence[str | bytes]], max_chars: int = DEFAULT_MAX_NOTE_CHARS) -> RequestNotes:
    """Validate the notes of each request (:func:`validate_note`) and gather the valid requests' notes."""
    gathered = RequestNotes([], [], {})
    for index, raw in enumerate(requests):
        try:
            texts = [validate_note(note, max_chars) for note in raw]
        except NoteError as err:
            gathered.errors[index] = str(err)
            continue
        gathered.spans.append((index, len(gathered.notes), len(texts)))
        gathered.notes.extend(texts)
    return gathered


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def note_word_log_probs(layout: NoteWindows, window_logits: np.ndarray) -> np.ndarray:
    """Per-word tag log-probabilities of one note from its windows' ``(windows, seq, tags)`` logits.

    Words without a word-piece (characters the tokenizer drops) get a confident O.
    """
    window_log_probs = log_softmax(window_logits.astype(np.float32))
    scores = np.full((len(layout.words), len(BIO_TAGS)), np.log(1e-9))
    scores[:, 0] = 0.0
    has_piece = layout.word_window >= 0
    scores[has_piece] = window_log_probs[layout.word_window[has_piece], layout.word_position[has_piece]]
    return scores


def note_labels(
    layout: NoteWindows, window_logits: np.ndarray, method: str = "viterbi"
) -> tuple[list[str], np.ndarray]:
    """O/D/T label and confidence (probability of the best tag) of each word of one note;
    ``window_logits`` are this note's rows of the encoder output."""
    word_scores = note_word_log_probs(layout, window_logits)
    return decode(word_scores, method), np.exp(word_scores.max(axis=-1))


def decode_note(text: str, layout: NoteWindows, window_logits: np.ndarray, method: str = "viterbi") -> list[Entity]:
    """Entities of one note, with character offsets into ``text``."""
    return note_entities(text, layout, *note_labels(layout, window_logits, method))


def note_entities(text: str, layout: NoteWindows, labels: Sequence[str], confidence: np.ndarray) -> list[Entity]:
    """Entities of one note from its decoded word labels and confidences (:func:`note_labels`)."""
    entities: list[Entity] = []
    for first, end, label in labels_to_spans(labels):
        start_char, end_char = layout.words[first][0], layout.words[end - 1][1]
        entities.append(Entity(label=label, start=start_char, end=end_char, text=text[start_char:end_char],
                               score=round(float(confidence[first:end].mean()), 4)))
    return entities


Encoder = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (input_ids, attention_mask) -> logits


def extract(
    notes: Sequence[str],
    tokenizer: Any,
    encoder: Encoder,
    max_length: int = DEFAULT_MAX_LENGTH,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = DEFAULT_MICRO_BATCH,
    method: str = "viterbi",
) -> list[list[Entity]]:
    """Entities for each note: tokenize, encode in length-sorted micro-batches, decode."""
    _, decoded = extract_decoded(notes, tokenizer, encoder, max_length, stride, batch_size, method)
    return [d.entities for d in decoded]


@dataclass
class DecodedNote:
    """What decoding saw of one note (monitoring features are computed from it, not from a second pass)."""

    labels: list[str]  # per word
    confidence: np.ndarray  # per word: probability of its best tag
    entities: list[Entity]


def extract_decoded(
    notes: Sequence[str],
    tokenizer: Any,
    encoder: Encoder,
    max_length: int = DEFAULT_MAX_LENGTH,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = DEFAULT_MICRO_BATCH,
    method: str = "viterbi",
) -> tuple[TokenizedBatch, list[DecodedNote]]:
    """:func:`extract` that also returns the tokenized batch and each note's word labels and confidences."""
    batch = tokenize_notes(tokenizer, notes, max_length, stride)
    logits = encode_sorted(batch.input_ids, batch.attention_mask, encoder, batch_size)
    decoded = []
    for note, layout in zip(notes, batch.notes):
        labels, confidence = note_labels(layout, note_rows(logits, layout), method)
        decoded.append(DecodedNote(labels, confidence, note_entities(note, layout, labels, confidence)))
    return batch, decoded


def encode_sentences(
    sentences: Sequence[Sequence[str]], tokenizer: Any, encoder: Encoder, batch_size: int = DEFAULT_MICRO_BATCH,
    max_length: int = DEFAULT_MAX_LENGTH, stride: int = DEFAULT_STRIDE,
) -> tuple[TokenizedBatch, np.ndarray]:
    """Pre-split sentences through the serving path's tokenize and encode steps (each sentence is one
    note of one sentence): the windows and their logits, which evaluation and export gates score."""
    offsets = [join_tokens(tokens)[1] for tokens in sentences]
    batch = tokenize_words(tokenizer, sentences, offsets, max_length, stride)
    return batch, encode_sorted(batch.input_ids, batch.attention_mask, encoder, batch_size)


def sentence_log_probs(
    sentences: Sequence[Sequence[str]], tokenizer: Any, encoder: Encoder, **options: Any
) -> list[np.ndarray]:
    """Per-word tag log-probabilities of pre-split sentences through the serving path."""
    batch, logits = encode_sentences(sentences, tokenizer, encoder, **options)
    return [note_word_log_probs(layout, note_rows(logits, layout)) for layout in batch.notes]


def decode_sentences(batch: TokenizedBatch, logits: np.ndarray, method: str = "viterbi") -> list[list[str]]:
    """O/D/T labels of each sentence of :func:`encode_sentences`' output."""
    return [note_labels(layout, note_rows(logits, layout), method)[0] for layout in batch.notes]


def predict_sentences(
    sentences: Sequence[Sequence[str]], tokenizer: Any, encoder: Encoder, method: str = "viterbi", **options: Any
) -> list[list[str]]:
    """O/D/T labels of pre-split sentences through the serving path."""
    return decode_sentences(*encode_sentences(sentences, tokenizer, encoder, **options), method)


def torch_encoder(model: Any) -> Encoder:
    """An encoder function over a PyTorch token classifier (training evaluation, export parity)."""
    import torch

    device = next(model.parameters()).device

    def encode(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            ids, mask = torch.from_numpy(input_ids).to(device), torch.from_numpy(attention_mask).to(device)
            return model(input_ids=ids, attention_mask=mask).logits.float().cpu().numpy()

    return encode


def note_rows(array: np.ndarray, layout: NoteWindows) -> np.ndarray:
    """The rows of a batch-level array (ids, mask, logits) that hold one note's windows."""
    return array[layout.first_rows: layout.first_rows + layout.n_windows]


def length_buckets(lengths: np.ndarray, max_rows: int) -> list[np.ndarray]:
    """Rows grouped into micro-batches of similar length: sorted by length, a new micro-batch starts
    when a row is longer than 1.1x the micro-batch's shortest + 4 pieces, or at ``max_rows`` rows.

    Padding is the cost that matters on CPU: measured here, random groups of 16 sentences encoded as
    one padded batch ran at ~140 sentences/s, in length buckets at ~230-300.
    """
    order = np.argsort(lengths, kind="stable")
    buckets, start = [], 0
    for i in range(1, len(order) + 1):
        if i == len(order) or i - start >= max_rows or lengths[order[i]] > 1.1 * lengths[order[start]] + 4:
            buckets.append(order[start:i])
            start = i
    return buckets


def encode_sorted(input_ids: np.ndarray, attention_mask: np.ndarray, encoder: Encoder, max_rows: int) -> np.ndarray:
    """Run the encoder over windows in length buckets (:func:`length_buckets`); returns each window's
    logits ``(windows, max length, tags)`` in the original order (padding positions are never read)."""
    lengths = attention_mask.sum(axis=1)
    out: list = [None] * len(lengths)
    for rows in length_buckets(lengths, max_rows):
        width = int(lengths[rows].max())
        logits = encoder(input_ids[rows, :width], attention_mask[rows, :width])
        for row, window_logits in zip(rows, logits):
            out[row] = window_logits
    return _stack_ragged(out)


def _stack_ragged(windows: list[np.ndarray]) -> np.ndarray:
    """Stack ``(seq_i, tags)`` arrays into ``(n, max seq, tags)`` (padding is never read)."""
    if not windows:
        return np.zeros((0, 0, len(BIO_TAGS)), dtype=np.float32)
    width = max(w.shape[0] for w in windows)
    stacked = np.zeros((len(windows), width, windows[0].shape[-1]), dtype=np.float32)
    for i, w in enumerate(windows):
        stacked[i, : w.shape[0]] = w
    return stacked


# --- ONNX Runtime ----------------------------------------------------------------------------

def ort_session(onnx_path: Path, threads: int = 1, spinning: bool = True) -> Any:
    """An ONNX Runtime CPU session with all graph optimisations and ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:  # idle threads sleep instead of spinning: they share the cores with other processes
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Spin inside a run, not after it: threads left spinning between runs held both cores of a 2-core
    # box against the gRPC server and client (measured: Triton single-note p50 9.4 -> 8.7 ms, and
    # in-process + Triton alternating 18/24 -> 7/9 ms; in-process batch throughput unchanged).
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def ort_encoder(onnx_path: Path, threads: int = 1, spinning: bool = True) -> Encoder:
    """An encoder function ``(windows, seq) -> (windows, seq, tags)`` over an exported model."""
    session = ort_session(onnx_path, threads, spinning)

    def encode(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids[:, None, :], "attention_mask": attention_mask[:, None, :]}
        return session.run(["logits"], feeds)[0][:, 0]

    return encode


class SoloCores:
    """Lets a small call run on every core while no other model instance is running.

    Each Triton instance encodes on ``threads`` (one) so that under load the instances together fill the
    cores; alone, a single note then takes ~1.6x as long as on two threads. So each instance also holds a
    session on every core (``solo``), and the instances sharing ``lock_dir`` (the model repository)
    announce their runs with an advisory lock on it: a solo run holds it exclusively, a narrow run shared.
    A small call that cannot take it at once runs narrow; a narrow run waits for a solo one to end."""

    def __init__(self, lock_dir: Path, narrow: Encoder, solo: Encoder, max_chars: int):
        self.narrow, self.solo, self.max_chars = narrow, solo, max_chars
        self._lock = os.open(lock_dir, os.O_RDONLY)

    def _take(self, mode: int) -> bool:
        try:
            fcntl.flock(self._lock, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    @contextmanager
    def encoder(self, notes: Sequence[str]) -> Iterator[Encoder]:
        """The encoder for ``notes``; the lock is held until the caller is done with it."""
        if sum(map(len, notes)) <= self.max_chars and self._take(fcntl.LOCK_EX):
            encoder = self.solo
        else:  # wait out a solo run (milliseconds: it is short and holds every core anyway)
            fcntl.flock(self._lock, fcntl.LOCK_SH)
            encoder = self.narrow
        try:
            yield encoder
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def __del__(self) -> None:
        os.close(self._lock)


class NerPipeline:
    """One exported model version run in this process: the tokenizer and ``model.onnx`` of
    ``version_dir`` with its Triton config ``parameters`` (max_length, stride, max_note_chars,
    micro_batch, decode, model_file, threads, spinning, solo_threads, solo_max_chars). The CPU ``ner``
    Triton model runs exactly this; ``threads`` overrides the config's.

    ``solo_threads`` above ``threads`` (``0``: every core) adds :class:`SoloCores`: a call of at most
    ``solo_max_chars`` characters runs on ``solo_threads`` threads while no other instance runs."""

    def __init__(self, version_dir: Path | str, parameters: dict[str, str], threads: int | None = None):
        version_dir = Path(version_dir)
        self.max_length = int(parameters.get("max_length", DEFAULT_MAX_LENGTH))
        self.stride = int(parameters.get("stride", DEFAULT_STRIDE))
        self.max_note_chars = int(parameters.get("max_note_chars", DEFAULT_MAX_NOTE_CHARS))
        self.micro_batch = int(parameters.get("micro_batch", DEFAULT_MICRO_BATCH))
        self.method = parameters.get("decode", "viterbi")
        self.tokenizer = WordPieceTokenizer.from_dir(version_dir)
        model_file = version_dir / parameters.get("model_file", "model.onnx")
        threads = threads or int(parameters.get("threads", 1))
        spinning = parameters.get("spinning", "true") == "true"
        self.encode = ort_encoder(model_file, threads, spinning)
        solo_threads = int(parameters.get("solo_threads", 1)) or len(os.sched_getaffinity(0))
        self.solo = None if solo_threads <= threads else SoloCores(
            version_dir.parent.parent, self.encode, ort_encoder(model_file, solo_threads, spinning),
            int(parameters.get("solo_max_chars", 0)))
        self.version_dir = version_dir
        self._vocabulary: Any = False  # the training vocabulary, read on the first call with features

    @contextmanager
    def _encoder(self, notes: Sequence[str]) -> Iterator[Encoder]:
        if self.solo is None:
            yield self.encode
        else:
            with self.solo.encoder(notes) as encoder:
                yield encoder

    def __call__(self, notes: Sequence[str]) -> list[list[Entity]]:
        """Entities of each (validated) note."""
        with self._encoder(notes) as encoder:
            return extract(notes, self.tokenizer, encoder, self.max_length, self.stride, self.micro_batch,
                           self.method)

    def with_features(self, notes: Sequence[str]) -> tuple[list[list[Entity]], np.ndarray]:
        """Entities of each note and the notes' monitoring rows (``monitoring.features.batch_features``: one
        row per sentence, note after note), computed from the same tokenized batch and decoding."""
        from monitoring.features import batch_features, read_vocabulary

        if self._vocabulary is False:
            self._vocabulary = read_vocabulary(self.version_dir)
        with self._encoder(notes) as encoder:
            batch, decoded = extract_decoded(notes, self.tokenizer, encoder, self.max_length, self.stride,
                                             self.micro_batch, self.method)
        rows = batch_features(notes, batch, [d.labels for d in decoded],
                              [d.confidence for d in decoded], self.tokenizer.unk_token_id, self._vocabulary)
        return [d.entities for d in decoded], rows


# --- tensors between Triton models -----------------------------------------------------------

WORD_INDEX_COLUMNS = 4  # start char, end char, window, position (-1 pads)


def pack_notes(batch: TokenizedBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-note tensors of ``batch.notes`` (any subset of the tokenized notes): ids and mask
    ``(notes, windows, seq)`` (padded windows are all zero) and the word index ``(notes, words, 4)``,
    so each note travels as one row of a batch."""
    n_notes = len(batch.notes)
    max_windows = max((n.n_windows for n in batch.notes), default=1)
    max_words = max((len(n.words) for n in batch.notes), default=0)
    seq = max((int(note_rows(batch.attention_mask, n).sum(axis=1).max()) for n in batch.notes), default=2)
    input_ids = np.zeros((n_notes, max_windows, seq), dtype=np.int64)
    attention_mask = np.zeros((n_notes, max_windows, seq), dtype=np.int64)
    word_index = np.full((n_notes, max(max_words, 1), WORD_INDEX_COLUMNS), -1, dtype=np.int64)
    for i, note in enumerate(batch.notes):
        input_ids[i, : note.n_windows] = note_rows(batch.input_ids, note)[:, :seq]
        attention_mask[i, : note.n_windows] = note_rows(batch.attention_mask, note)[:, :seq]
        if note.words:
            word_index[i, : len(note.words), :2] = note.words
            word_index[i, : len(note.words), 2] = note.word_window
            word_index[i, : len(note.words), 3] = note.word_position
    return input_ids, attention_mask, word_index


def unpack_note(word_index: np.ndarray) -> NoteWindows:
    """The layout of one note from its row of :func:`pack_notes`' word index."""
    real = word_index[word_index[:, 0] >= 0]
    n_windows = max(int(real[:, 2].max()) + 1, 1) if len(real) else 1
    words = [(int(s), int(e)) for s, e in real[:, :2]]
    return NoteWindows(words, 0, n_windows, real[:, 2].copy(), real[:, 3].copy())
