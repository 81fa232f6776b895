"""`medner serve --gpu`'s models, served by the bundled Triton on this CPU-only machine: the ensemble (ner_tokenize
-> ner_encoder -> ner_decode, python models all) with the encoder's session on ONNX Runtime's CPU provider, the code
a GPU runs with the TensorRT/CUDA provider. Its entities must be the CPU path's, note for note, and its profiles
(written by the decoders under the ensemble's name) the rows the CPU path profiles for the same notes; its
decoders report the version served and profile a request's group, as the CPU models do, and no note's words reach
a profile or the log."""

from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from clients.local import LocalNerModel
from clients.ner_client import NerClient
from medner.triton import TritonError, TritonServer
from monitoring.features import FEATURES, FeatureTagger
from monitoring.profile_store import list_groups, list_profiles, merge_profiles
from tests.model_repository.test_ner_model import SERVED_MODEL_LOADER, infer_one_or_error
from tests.monitoring.test_serving_profiles import MARKER
from tests.notes import NOTES
from tests.serve import served_version_gauge

pytestmark = pytest.mark.slow


def spans(entities: list[dict]) -> list[tuple[str, int, int]]:
    """A note's entities without their scores, which the two paths compute in different orders."""
    return [(e["label"], e["start"], e["end"]) for e in entities]


def test_the_gpu_ensemble_answers_as_the_cpu_path(exported_repository: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(exported_repository, repository, copy_function=os.link,
                    ignore=shutil.ignore_patterns("serving.json"))
    for config in repository.glob("*/configs/gpu.pbtxt"):  # one instance each: 2 cores here, not a GPU node
        text = config.read_text()
        config.unlink()  # a hard link into the session's repository: write a file of its own
        config.write_text(re.sub(r"count: \d+", "count: 1", text))
    log = tmp_path / "no-gpu.log"
    unready = TritonServer.on_free_ports(repository, gpu=True, log_file=log)
    with pytest.raises(TritonError):  # as deployed, a GPU encoder without a GPU provider fails its load
        unready.start()
    unready.stop()
    assert "no GPU execution provider works here" in log.read_text()
    for config in repository.glob("ner_encoder*/configs/gpu.pbtxt"):  # the CPU will do: the GPU path's code on CPU
        config.write_text(config.read_text() + 'parameters { key: "require_gpu" value: { string_value: "false" } }\n')
    notes = [*NOTES[:3], "x", " ".join(["Chemotherapy improved survival in metastatic colorectal cancer."] * 12),
             f"{MARKER} presented with {MARKER}itis and was treated with {MARKER}mab."]
    profiles, log = tmp_path / "profiles", tmp_path / "gpu.log"  # this server's alone
    with TritonServer.on_free_ports(repository, gpu=True, profile_dir=str(profiles), log_file=log) as server:
        index = grpcclient.InferenceServerClient(server.grpc_url)
        for model in ("ner", "ner_int8"):
            assert index.get_model_config(model).config.platform == "ensemble"  # not the CPU python model
            with NerClient(server.grpc_url, model=model, timeout=120) as client:  # ner's notes with a group
                served = client.extract(notes, group="clinic_a" if model == "ner" else None)
            expected = LocalNerModel(repository, model, threads=1).extract(notes)
            assert [spans(note) for note in served] == [spans(note) for note in expected], model
            assert all(abs(a["score"] - b["score"]) <= 1e-3 for s, x in zip(served, expected) for a, b in zip(s, x))
        index.close()
        assert served_version_gauge(server.metrics_port) == {"ner": 1, "ner_int8": 1}  # the divergence alert's
    written = [path.read_bytes() for path in profiles.rglob("*.bin")]  # the server stopped: every window written
    assert written and not any(MARKER.encode() in profile for profile in [*written, log.read_bytes()])
    assert list_groups(profiles, "ner") == ["clinic_a"] and not list_groups(profiles, "ner_int8")  # as on CPU
    for model in ("ner", "ner_int8"):
        view = merge_profiles(list_profiles(profiles, model, datetime(2000, 1, 1, tzinfo=UTC),
                                            datetime(2100, 1, 1, tzinfo=UTC)))
        _, rows = FeatureTagger(LocalNerModel(repository, model, threads=1).pipeline)(notes)
        for column, want in zip(FEATURES, rows.T):
            summary = view.get_column(column).to_summary_dict()
            assert summary["counts/n"] == len(rows), (model, column)
            if not np.isnan(want).all():
                assert summary["distribution/mean"] == pytest.approx(np.nanmean(want), rel=1e-4), (model, column)


FAULTY_DECODER = '''"""The real ner_decode model (served_model.py beside this file), whose decoding fails every call
that includes a note with the word BREAK, the way a note that breaks decoding would."""
''' + SERVED_MODEL_LOADER + '''_decode_notes = served_model.decode_notes


def faulty_decode_notes(texts, *args, **kwargs):
    if any("BREAK" in text for text in texts):
        raise RuntimeError("cannot decode " + " | ".join(texts))  # quotes the notes: must not reach the client
    return _decode_notes(texts, *args, **kwargs)


served_model.decode_notes = faulty_decode_notes
TritonPythonModel = served_model.TritonPythonModel
'''


def test_a_request_that_breaks_the_decoders_batch_fails_alone(exported_repository: Path, tmp_path: Path) -> None:
    """The fallback of model_repository/ner_decode/model.py, as the CPU model's: when decoding a dynamic batch
    fails, each request is decoded alone, so only the one that breaks decoding fails, with no note text in its
    error, and the others get the CPU path's entities."""
    repository = tmp_path / "repository"
    for model in ("ner", "ner_tokenize", "ner_encoder", "ner_decode"):  # the `ner` ensemble alone
        shutil.copytree(exported_repository / model, repository / model)
    for config in repository.glob("*/configs/gpu.pbtxt"):
        config.write_text(re.sub(r"count: \d+", "count: 1", config.read_text()))
    encoder = repository / "ner_encoder" / "configs" / "gpu.pbtxt"
    encoder.write_text(encoder.read_text() + 'parameters { key: "require_gpu" value: { string_value: "false" } }\n')
    # the decoder waits for 4 requests (up to a minute) and decodes them as one batch: the batch is certain
    decoder = repository / "ner_decode" / "configs" / "gpu.pbtxt"
    batching = "dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 60000000 }"
    decoder.write_text(re.sub(r"dynamic_batching \{[^}]*\}", batching, decoder.read_text()))
    version = repository / "ner_decode" / "1"
    (version / "model.py").rename(version / "served_model.py")
    (version / "model.py").write_text(FAULTY_DECODER)
    payloads = [NOTES[0].encode(), b"BREAK: secret-note-text", NOTES[1].encode(), NOTES[2].encode()]
    expected = LocalNerModel(exported_repository, threads=1).extract(NOTES[:3])

    with TritonServer.on_free_ports(repository, gpu=True, log_file=tmp_path / "server.log") as server:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda payload: infer_one_or_error(server.grpc_url, payload), payloads))
        statistics = grpcclient.InferenceServerClient(server.grpc_url).get_inference_statistics("ner_decode",
                                                                                                as_json=True)
    [batches] = [s["batch_stats"] for s in statistics["model_stats"]]
    assert [int(b["batch_size"]) for b in batches] == [4]  # the four were decoded as one batch, which failed
    for served, want in zip([results[0], results[2], results[3]], expected):
        assert spans(served) == spans(want)
        assert all(abs(a["score"] - b["score"]) <= 1e-3 for a, b in zip(served, want))
    assert isinstance(results[1], InferenceServerException)
    assert "the model failed on this request (RuntimeError)" in str(results[1]) and "secret" not in str(results[1])
