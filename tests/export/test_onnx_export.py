from __future__ import annotations

import json
from pathlib import Path

import pytest

from export import onnx_export
from export.onnx_export import ExportRefused, export_model
from medner.data import read_behealthy

pytestmark = pytest.mark.slow


def test_export_writes_a_gated_version_with_lineage(untrained_model_dir: Path, tiny_corpus: Path,
                                                    tmp_path: Path) -> None:
    test = read_behealthy(tiny_corpus)["test"]
    root = tmp_path / "repo" / "ner_encoder"
    first = export_model(untrained_model_dir, root, test, {"source": "unit-test"})
    assert first.name == "1"
    files = {p.name for p in first.iterdir()}
    assert {"model.onnx", "model.int8.onnx", "tokenizer.json", "lineage.json"} <= files
    lineage = json.loads((first / "lineage.json").read_text())
    assert lineage["source"] == "unit-test" and lineage["version"] == 1
    assert lineage["gates"]["parity"]["passed"]
    assert lineage["gates"]["parity"]["max_abs_logit_diff"] <= 1e-3
    assert lineage["gates"]["parity"]["sentences_with_different_labels"] == 0
    assert "entity_f1" in lineage["metrics_fp32"] and "onnxruntime" in lineage["package_versions"]

    # a failing parity gate refuses the export and leaves no version behind
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)
        with pytest.raises(ExportRefused, match="parity gate failed"):
            export_model(untrained_model_dir, root, test, {"source": "unit-test"})
    assert sorted(p.name for p in root.iterdir()) == ["1"]
