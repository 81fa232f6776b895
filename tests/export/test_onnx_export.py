from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import pytest

from export import gates, onnx_export
from export.onnx_export import INT8_MODELS, INT8_RECIPES, MODELS, ExportRefused, export_model
from medner.data import read_behealthy
from medner.decoding import SpanEdges

pytestmark = pytest.mark.slow


def test_export_writes_a_gated_version_of_every_model(untrained_model_dir: Path, tiny_corpus: Path,
                                                      tmp_path: Path) -> None:
    test = read_behealthy(tiny_corpus)["test"]
    repository = tmp_path / "repo"
    assert export_model(untrained_model_dir, repository, test=test, lineage={"source": "unit-test"}) == 1
    for model in MODELS:
        assert (repository / model / "config.pbtxt").exists() and (repository / model / "1").is_dir()
    assert (repository / "ner_encoder" / "configs" / "gpu.pbtxt").exists()
    assert {"model.onnx", "model.py", "lineage.json"} <= {p.name for p in (repository / "ner_encoder/1").iterdir()}
    int8 = onnx.load(repository / "ner_encoder_int8/1/model.onnx")
    int8_weights = {t.name for t in int8.graph.initializer if t.data_type == onnx.TensorProto.INT8}
    assert "MatMulInteger" in {n.op_type for n in int8.graph.node} and int8_weights  # the matrix products: INT8
    assert all(n.input[0] not in int8_weights for n in int8.graph.node if n.op_type == "Gather")  # embeddings: fp32
    assert (repository / "ner_tokenize/1/tokenizer.json").exists()
    for pipeline, encoder in (("ner", "ner_encoder"), ("ner_int8", "ner_encoder_int8")):  # self-contained
        assert {"model.onnx", "model.py", "tokenizer.json"} <= {p.name for p in (repository / pipeline / "1").iterdir()}
        onnx_file = (repository / pipeline / "1/model.onnx").read_bytes()
        assert onnx_file == (repository / encoder / "1/model.onnx").read_bytes()
    for decoding in ("ner", "ner_int8", "ner_decode", "ner_decode_int8"):  # the models that decode: span edges
        assert SpanEdges.load(repository / decoding / "1") == SpanEdges.load(untrained_model_dir) != SpanEdges()
    lineage = json.loads((repository / "ner_encoder/1/lineage.json").read_text())
    assert lineage["source"] == "unit-test" and lineage["version"] == 1 and lineage["span_edges"]
    assert not lineage["crf_layer"]  # the untrained model's edges carry no learned scores
    parity = lineage["gates"]["parity"]
    assert parity["passed"] and parity["max_abs_logit_diff"] <= 1e-3 and parity["sentences_with_different_labels"] == 0
    assert "entity_f1" in lineage["metrics_fp32"] and "onnxruntime" in lineage["package_versions"]
    assert not (repository / "ner" / "1" / "estimation.json").exists()  # no held-out sentences given: no estimate

    # a failing parity gate refuses the export and leaves the repository as it was
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gates, "PARITY_TOLERANCE", -1.0)
        with pytest.raises(ExportRefused, match="parity gate failed"):
            export_model(untrained_model_dir, repository, test=test, lineage={"source": "unit-test"})
    assert sorted(p.name for p in repository.iterdir()) == sorted(MODELS)
    assert all(sorted(p.name for p in (repository / m).glob("[0-9]*")) == ["1"] for m in MODELS)

    # an INT8 model that fails its quality gate is not published; fp32 still is, and lineage says why
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gates, "INT8_MAX_F1_DROP", -1.0)  # no INT8 model can pass: F1 would have to rise by 1
        assert export_model(untrained_model_dir, repository, test=test, lineage={"source": "unit-test"}) == 2
    for model in MODELS:
        assert (repository / model / "2").is_dir() == (model not in INT8_MODELS), model
    int8_gate = json.loads((repository / "ner_encoder/2/lineage.json").read_text())["gates"]["int8_quality"]
    assert not int8_gate["passed"] and not int8_gate["published"] and int8_gate["max_drop"] == -1.0
    assert [t["recipe"] for t in int8_gate["tried"]] == [r.name for r in INT8_RECIPES]  # every recipe, in turn
    assert int8_gate["recipe"] == INT8_RECIPES[-1].name and not any(t["passed"] for t in int8_gate["tried"])
    first = json.loads((repository / "ner_encoder/1/lineage.json").read_text())["gates"]["int8_quality"]
    assert first["recipe"] == "int8-matmul" and len(first["tried"]) == 1  # passed at once: nothing else tried


def test_a_model_failing_the_int8_gate_gets_its_feed_forward_outputs_kept_fp32(untrained_model_dir: Path,
                                                                              tmp_path: Path) -> None:
    """The ladder: refused with every MatMul quantized, then with the first layer's feed-forward output kept fp32,
    the next recipe keeps every layer's in fp32 (a plain MatMul on fp32 weights) and quantizes the rest."""
    fp32 = onnx_export.export_onnx(untrained_model_dir, tmp_path / "model.onnx")
    outputs = [n.name for n in onnx.load(fp32).graph.node
               if n.op_type == "MatMul" and re.search(r"/layer\.\d+/output/dense/", n.name)]
    assert len(outputs) == 2  # the tiny test encoder's two layers
    seen = []

    def gate(path: Path) -> tuple[gates.GateReport, dict]:
        seen.append(path.read_bytes())
        return gates.GateReport(len(seen) > 2, {"entity_f1": 0.5, "drop": 0.0}), {"entity_f1": 0.5}

    report, metrics, tried = onnx_export.quantize_within_gate(fp32, tmp_path / "int8.onnx", gate)
    assert report.passed and metrics == {"entity_f1": 0.5}
    assert [(t["recipe"], t["nodes_kept_fp32"], t["passed"]) for t in tried] == [
        ("int8-matmul", 0, False), ("int8-first-ffn-output-fp32", 1, False), ("int8-ffn-output-fp32", 2, True)]
    int8 = onnx.load(tmp_path / "int8.onnx")
    assert (tmp_path / "int8.onnx").read_bytes() == seen[-1]  # the file left is the one that passed
    weights = {t.name for t in int8.graph.initializer}
    assert {n.name for n in int8.graph.node if n.op_type == "MatMul" and n.input[1] in weights} == set(outputs)
    assert "MatMulInteger" in {n.op_type for n in int8.graph.node}  # the other products: INT8
    # a recipe whose pattern matches nothing here would quantize the same model again: left out
    same = onnx_export.Int8Recipe("no-such-node", r"/no-such-node/")
    assert [r.name for r, _ in onnx_export.recipe_nodes(fp32, (INT8_RECIPES[0], same))] == ["int8-matmul"]


def test_each_served_model_gets_its_accuracy_estimator(exported_repository: Path) -> None:
    """Export calibrates the estimate on the held-out sentences it is given, per served model, and the reference
    profile carries the estimate on the test sentences (the baseline a window's estimate is compared with)."""
    from monitoring.estimation import ESTIMATION_FILE, Estimator, window_estimate
    from monitoring.profile_store import read_profile

    for model in ("ner", "ner_int8"):
        version = exported_repository / model / "1"
        estimator = Estimator.load(version)
        assert estimator is not None and estimator.calibration["notes"] == 30
        assert 0 < estimator.exact_at <= 1 and 0 < estimator.overlap_at <= 1
        assert 0 <= window_estimate(read_profile(version / "reference_profile.bin"))["entity_f1"] <= 1
    assert not (exported_repository / "ner_encoder" / "1" / ESTIMATION_FILE).exists()  # only what profiles



def test_a_refused_version_number_is_never_given_again(tmp_path: Path) -> None:
    """Promotion removes a refused version's folders and records the decision: the number stays taken."""
    from medner.promotion import Decision
    from medner.registry import write_serving_record

    (tmp_path / "ner" / "1").mkdir(parents=True)
    (tmp_path / "ner_encoder" / "2").mkdir(parents=True)
    assert onnx_export.next_version(tmp_path) == 3
    refused = Decision("refuse", 3, champion=1).to_dict()  # v3 was exported, refused and its folders removed
    write_serving_record(tmp_path, {"version": 1, "previous": [], "history": [refused]})
    assert onnx_export.next_version(tmp_path) == 4
    write_serving_record(tmp_path, {"version": 7, "previous": [5], "history": []})  # a record from elsewhere
    assert onnx_export.next_version(tmp_path) == 8


@pytest.mark.slow
def test_no_word_of_a_few_notes_reaches_any_file_of_the_version_local_or_on_s3(
        untrained_model_dir: Path, tiny_corpus: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """A patient's name and record number in three reviewed notes (in training and in the calibration split) appear
    in no file export writes, in the mirror or in the bucket: the vocabulary publishes words of five sentences
    or more, with digits masked."""
    from medner.data import Sentence
    from medner.s3 import opened
    from tests.aws import TEST_CREDENTIALS, aws

    for name, value in {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": moto_endpoint,
                        "MEDNER_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    aws(moto_endpoint, "s3").create_bucket(Bucket="models")
    splits = read_behealthy(tiny_corpus)
    markers = ("Zqxmarker7731", "99887766")
    noted = [Sentence(("Mr", markers[0], "MRN", markers[1], "had", "asthma", "."), ("O", "O", "O", "O", "O", "D", "O"))
             for _ in range(3)]
    with opened("s3://models/ner") as folder:
        version = export_model(untrained_model_dir, folder, test=splits["test"], lineage={"source": "unit-test"},
                               train=[*splits["train"], *noted], calibration=[*splits["train"][:30], *noted])
    files = [p for p in folder.rglob("*") if p.is_file() and f"/{version}/" in p.as_posix()]
    assert any(p.name == "train_vocabulary.txt" for p in files) and any(p.name == "model.onnx" for p in files)
    s3 = aws(moto_endpoint, "s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="models", Prefix="ner/")["Contents"]]
    blobs = [p.read_bytes() for p in files] + [s3.get_object(Bucket="models", Key=k)["Body"].read() for k in keys]
    assert len(keys) >= len(files)
    for marker in markers:
        assert not any(marker.lower().encode() in blob.lower() for blob in blobs), marker
    vocabulary = (folder / "ner" / str(version) / "train_vocabulary.txt").read_text().split()
    assert "asthma" in vocabulary and "00000000" not in vocabulary  # frequent words stay; three notes' do not
