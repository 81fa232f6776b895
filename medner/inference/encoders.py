"""Encoders: functions ``(input_ids, attention_mask) -> logits`` over ONNX Runtime or PyTorch, run over
windows in length-sorted micro-batches."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from medner.labels import BIO_TAGS

DEFAULT_MICRO_BATCH = 64  # most windows per length bucket


Encoder = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (input_ids, attention_mask) -> logits


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


def length_buckets(lengths: np.ndarray, max_rows: int) -> list[np.ndarray]:
    """Rows grouped into micro-batches of similar length: sorted by length, a new micro-batch starts
    when a row is longer than 1.1x the micro-batch's shortest + 4 pieces, or at ``max_rows`` rows.

    Padding is the cost that matters on CPU: a padded batch of sentences of mixed lengths spends most of
    its time on padding.
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


GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")  # preferred in this order where installed


def gpu_providers(device_id: int = 0, fp16: bool = True, cache_dir: str = "") -> list[Any]:
    """ONNX Runtime's execution providers for a GPU encoder: TensorRT (FP16, an engine cache) and CUDA where this
    onnxruntime has them (``onnxruntime-gpu``), CPU last (ONNX Runtime places each node on the first that runs
    it; only CPU where no GPU provider is installed, as with the CPU wheel)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    options = {"TensorrtExecutionProvider": {"device_id": device_id, "trt_fp16_enable": fp16,
                                             "trt_engine_cache_enable": bool(cache_dir),
                                             "trt_engine_cache_path": cache_dir},
               "CUDAExecutionProvider": {"device_id": device_id}}
    return [(name, options[name]) for name in GPU_PROVIDERS if name in available] + ["CPUExecutionProvider"]


def ort_session(onnx_path: Path, threads: int = 1, spinning: bool = True, providers: list[Any] | None = None) -> Any:
    """An ONNX Runtime session (CPU unless ``providers``, e.g. :func:`gpu_providers`) with all graph optimisations
    and ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:  # idle threads sleep instead of spinning: they share the cores with other processes
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Spin inside a run, not after it: threads left spinning between runs held both cores of a 2-core
    # box against the gRPC server and client (single-note latency suffered; batch throughput did not gain).
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(onnx_path), options, providers=providers or ["CPUExecutionProvider"])


def ort_encoder(onnx_path: Path, threads: int = 1, spinning: bool = True, providers: list[Any] | None = None,
                require_gpu: bool = False) -> Encoder:
    """An encoder function ``(windows, seq) -> (windows, seq, tags)`` over an exported model. ``require_gpu``:
    raise RuntimeError unless a GPU provider is active in the session, as created (ONNX Runtime falls back to the
    CPU silently when a listed GPU provider cannot load: missing CUDA or TensorRT libraries, no device)."""
    session = ort_session(onnx_path, threads, spinning, providers)
    if require_gpu and not set(session.get_providers()) & set(GPU_PROVIDERS):
        import onnxruntime as ort

        raise RuntimeError(f"a GPU was asked for and no GPU execution provider works here: the session runs on "
                           f"{session.get_providers()} (this onnxruntime has {ort.get_available_providers()}; "
                           "install onnxruntime-gpu matching the CUDA/TensorRT libraries, or serve the CPU configs)")

    def encode(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids[:, None, :], "attention_mask": attention_mask[:, None, :]}
        return session.run(["logits"], feeds)[0][:, 0]

    return encode


class SoloCores:
    """Lets a small call run on every core while no other model instance is running.

    Each Triton instance encodes on ``threads`` (one) so that under load the instances together fill the
    cores; alone, a single note then takes longer than on two threads. So each instance also holds a
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
