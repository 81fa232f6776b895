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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from clients.local import LocalNerModel
from clients.ner_client import NerClient
from medner.triton import TritonError, TritonServer
from monitoring.features import FEATURES, FeatureTagger
from monitoring.profile_store import list_groups, list_profiles, merge_profiles
from tests.monitoring.test_serving_profiles import MARKER
from tests.notes import NOTES
from tests.serve import served_version_gauge

pytestmark = pytest.mark.slow


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
            assert [[(e["label"], e["start"], e["end"]) for e in note] for note in served] == [
                [(e["label"], e["start"], e["end"]) for e in note] for note in expected], model
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
