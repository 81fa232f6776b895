"""Trained model -> ONNX fp32 (+ INT8) -> a numbered version folder with its lineage.

The exporter is ``torch.onnx.export`` (TorchScript path) on a thin wrapper taking only
``input_ids`` and ``attention_mask``: the encoder then has the same two inputs whatever the base model
(BERT has ``token_type_ids``, RoBERTa does not), with no exporter package (optimum) to pin transformers.
Gates, both on the test split through the serving path (:mod:`medner.inference`):

* parity: max |logit difference| between PyTorch and ONNX Runtime <= ``PARITY_TOLERANCE`` and
  identical decoded labels, else the export is refused;
* INT8 (onnxruntime dynamic quantisation of the MatMul weights, per-channel): entity F1 within
  ``INT8_MAX_F1_DROP`` of fp32, else the INT8 model is not published (both in :mod:`export.gates`). The
  :data:`INT8_RECIPES` are tried in turn, each keeping more of the sensitive products in fp32, and the first that
  passes is published; lineage names it and what each tried one scored.

Each served model's version folder also gets what monitoring compares live traffic with: the training
vocabulary (``train_vocabulary.txt``, for the out-of-vocabulary feature) and ``reference_profile.bin``, the
whylogs profile of the monitoring features of the test sentences sent through that exported model's serving
path as notes (:func:`monitoring.features.note_features`: the tokenization, sentence breaks and decoding a
served model applies, so the reference is what the served model would profile for in-distribution text;
features are per sentence, so it holds however live clients group sentences into notes). That costs one more
encoding pass over the test split per served model: the gates encode corpus sentences pre-split into words,
which is not what a served model sees.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.gates import ExportRefused, GateReport, int8_gate, parity_gate, torch_reference
from medner.data import Sentence
from medner.decoding import SPAN_EDGES_FILE, SpanEdges
from medner.inference import Encoder, ort_encoder
from medner.model_io import link_or_copy, load_tagger
from medner.registry import code_version, serving_record
from medner.spans import join_tokens

# Heavy or optional modules (torch, transformers, whylogs, Triton's clients, boto3, Metaflow) and the layers that
# import them are imported inside the functions that use them: importing this module stays cheap.

ONNX_OPSET = 17
# The matrix products' weights only: quantizing every op (the embedding table too) cost more F1 for no speed; on
# MPNet it failed the INT8 gate where this passes (benchmarks/results/frontier.md).
INT8_OP_TYPES = ("MatMul",)
FP32_FILE = "model.onnx"  # the INT8 encoder has the same file name in its own model folder


@dataclass(frozen=True)
class Int8Recipe:
    """One way to quantize the encoder: its MatMul weights, less those of the nodes ``keep_fp32`` matches (a regular
    expression searched in each node's name; "": none kept)."""

    name: str
    keep_fp32: str = ""


# Tried in order; export publishes the first within the INT8 gate: the fastest first, then with more of the
# sensitive products kept fp32: the first layer's feed-forward output (its input, after the activation, has the
# widest range), every layer's, then the whole feed-forward block. Models trained with a CRF layer fail the first
# (benchmarks/results/frontier_crf.md). Names as torch.onnx.export writes BERT's, MPNet's and ensembles' nodes.
INT8_RECIPES = (
    Int8Recipe("int8-matmul"),
    Int8Recipe("int8-first-ffn-output-fp32", r"/layer\.0/output/dense/MatMul$"),
    Int8Recipe("int8-ffn-output-fp32", r"/layer\.\d+/output/dense/MatMul$"),
    Int8Recipe("int8-attention-only", r"/layer\.\d+/(intermediate|output)/dense/MatMul$"),
)


def export_onnx(model_dir: Path, onnx_path: Path) -> Path:
    """Export the token classifier in ``model_dir``: ``input_ids``/``attention_mask`` of shape
    ``(notes, windows, sequence)`` -> ``logits`` ``(notes, windows, sequence, tags)``, all axes dynamic.

    The window axis lets one request carry a whole long note; the graph folds it into the batch.
    """
    import torch

    model = load_tagger(model_dir).eval()  # one model, or a seed ensemble's mean probabilities

    class WindowedLogits(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            notes, windows, sequence = input_ids.shape
            logits = self.inner(input_ids=input_ids.reshape(-1, sequence),
                                attention_mask=attention_mask.reshape(-1, sequence)).logits
            return logits.reshape(notes, windows, sequence, logits.shape[-1])

    example = torch.ones((2, 3, 8), dtype=torch.int64)
    axes = {0: "notes", 1: "windows", 2: "sequence"}
    with warnings.catch_warnings():  # the TorchScript path's deprecation and tracer notices; parity checks the result
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            WindowedLogits(model), (example, example), str(onnx_path), dynamo=False, opset_version=ONNX_OPSET,
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes},
        )
    return onnx_path


def quantize_int8(onnx_path: Path, int8_path: Path, op_types: Sequence[str] | None = INT8_OP_TYPES,
                  keep_fp32: Sequence[str] = ()) -> Path:
    """Dynamic INT8 quantisation, per-channel (closer argmax agreement with fp32 than per-tensor), of the ``op_types``
    (None: every op ONNX Runtime can quantize, the embedding lookup included) but the nodes named in ``keep_fp32``;
    the INT8 quality gate measures every export."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(onnx_path), str(int8_path), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=list(op_types) if op_types is not None else None,
                     nodes_to_exclude=list(keep_fp32))
    return int8_path


def recipe_nodes(onnx_path: Path, recipes: Sequence[Int8Recipe] = INT8_RECIPES) -> list[tuple[Int8Recipe, list[str]]]:
    """Each recipe with the names of the MatMul nodes of ``onnx_path`` it keeps in fp32; a recipe that would quantize
    the same nodes as one before it (its pattern matches nothing new in this graph) is left out."""
    import onnx

    names = [n.name for n in onnx.load(str(onnx_path), load_external_data=False).graph.node
             if n.op_type in INT8_OP_TYPES]
    chosen: list[tuple[Int8Recipe, list[str]]] = []
    for recipe in recipes:
        kept = [name for name in names if recipe.keep_fp32 and re.search(recipe.keep_fp32, name)]
        if all(kept != earlier for _, earlier in chosen):
            chosen.append((recipe, kept))
    return chosen


def quantize_within_gate(onnx_path: Path, int8_path: Path, gate: Callable[[Path], tuple[GateReport, dict]]
                         ) -> tuple[GateReport, dict, list[dict[str, Any]]]:
    """Quantize ``onnx_path`` into ``int8_path`` by each of :data:`INT8_RECIPES` in turn until ``gate`` (the INT8
    file -> its gate report and metrics) passes one; ``int8_path`` then holds it (else the last tried). Returns the
    last gate's report and metrics and, per recipe tried, its name, how many nodes it kept fp32 and its gate's
    details."""
    tried: list[dict[str, Any]] = []
    for recipe, kept in recipe_nodes(onnx_path):
        report, metrics = gate(quantize_int8(onnx_path, int8_path, keep_fp32=kept))
        tried.append({"recipe": recipe.name, "nodes_kept_fp32": len(kept), "passed": report.passed,
                      **{key: report.details[key] for key in ("entity_f1", "drop") if key in report.details}})
        if report.passed:
            break
    return report, metrics, tried


TEMPLATE_REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
MODELS = ("ner_tokenize", "ner_encoder", "ner_encoder_int8", "ner_decode", "ner_decode_int8", "ner", "ner_int8")
MODEL_CODE = {"ner_tokenize": "ner_tokenize", "ner_encoder": "ner_encoder", "ner_encoder_int8": "ner_encoder",
              "ner_decode": "ner_decode", "ner_decode_int8": "ner_decode",
              "ner": "ner", "ner_int8": "ner"}  # whose model.py each python model runs
PIPELINE_ENCODERS = {"ner": "ner_encoder", "ner_int8": "ner_encoder_int8"}  # CPU pipeline -> its ONNX file
# CPU pipeline -> the GPU ensemble's decoder that profiles in its place (with its vocabulary and estimator)
PIPELINE_DECODERS = {"ner": "ner_decode", "ner_int8": "ner_decode_int8"}
INT8_MODELS = ("ner_encoder_int8", "ner_decode_int8", "ner_int8")  # published only when INT8 passed its gate


def next_version(repository: Path) -> int:
    """The next version number: one above the highest any model's folder or ``serving.json`` (its champion, the
    versions it replaced, every promotion decision) has held, so a number refused and removed is never given to
    another model."""
    numbers = [int(p.name) for m in MODELS for p in (repository / m).glob("*") if p.is_dir() and p.name.isdigit()]
    record = serving_record(repository)
    numbers += [v for v in (record["version"], *record["previous"], *(d.get("version") for d in record["history"]))
                if isinstance(v, int)]
    return max(numbers, default=0) + 1


def install_configs(repository: Path) -> None:
    """Copy each model's configuration (``config.pbtxt``, ``configs/``) from the project's template
    repository into ``repository`` where missing; existing configurations are left as they are."""
    for model in MODELS:
        source, target = TEMPLATE_REPOSITORY / model, repository / model
        target.mkdir(parents=True, exist_ok=True)
        for item in [source / "config.pbtxt", *sorted((source / "configs").glob("*.pbtxt"))]:
            destination = target / item.relative_to(source)
            if not destination.exists():
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(item, destination)


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("medner", "torch", "transformers", "onnx", "onnxruntime", "numpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_monitoring_reference(
    staging: Path, encoders: dict[str, Encoder], sentences: Sequence[Sentence], tokenizer: Any,
    train: Sequence[Sentence] | None, decoder: str, edges: SpanEdges | None = None,
    calibration: Sequence[Sentence] | None = None,
) -> None:
    """Write ``train_vocabulary.txt`` (when ``train`` is given), ``estimation.json`` (the accuracy estimator fitted
    on the labelled ``calibration`` sentences, when given) and ``reference_profile.bin`` into the served models'
    folders: the monitoring rows of ``sentences``, each sent as a note (its tokens joined by spaces) through the
    serving path with that model's encoder (``encoders``: served model -> encoder)."""
    from datetime import UTC, datetime

    from monitoring.estimation import calibrate
    from monitoring.features import note_features
    from monitoring.profile_store import write_view
    from monitoring.profiles import profile_rows
    from monitoring.vocabulary import read_vocabulary, write_vocabulary

    notes = [join_tokens(s.tokens)[0] for s in sentences]
    for model, encoder in encoders.items():
        if train is not None:
            write_vocabulary((s.tokens for s in train), staging / model)
        estimator = None
        if calibration:
            try:
                estimator = calibrate(calibration, tokenizer, encoder, decoder, edges,
                                      source=f"{len(calibration)} held-out sentences",
                                      vocabulary=read_vocabulary(staging / model))
                estimator.save(staging / model)
            except ValueError as err:  # a model that predicts (almost) nothing: served, without an estimate
                warnings.warn(f"{model}: no accuracy estimate: {err}", stacklevel=2)
        rows = note_features(notes, tokenizer, encoder, read_vocabulary(staging / model), decoder=decoder,
                             edges=edges, estimator=estimator)
        write_view(profile_rows(rows, datetime.now(UTC)), staging / model / "reference_profile.bin")


def _stage(staging: Path, model_dir: Path) -> tuple[Any, SpanEdges | None]:
    """A version's folders in ``staging``: each model's code, the tokenizer where text is tokenized and the span
    edges where tags are decoded. Returns the tokenizer and the span edges."""
    from transformers import AutoTokenizer

    shutil.rmtree(staging, ignore_errors=True)
    for model in MODELS:
        (staging / model).mkdir(parents=True)
        shutil.copy2(TEMPLATE_REPOSITORY / MODEL_CODE[model] / "model.py", staging / model / "model.py")
    tokenizer, edges = AutoTokenizer.from_pretrained(model_dir), SpanEdges.load(model_dir)
    for model in ("ner_tokenize", *PIPELINE_ENCODERS, *PIPELINE_DECODERS.values()):  # decoders: its unknown id
        tokenizer.save_pretrained(staging / model)
    if edges is not None:  # the models that decode
        for model in (*PIPELINE_DECODERS.values(), *PIPELINE_ENCODERS):
            shutil.copy2(model_dir / SPAN_EDGES_FILE, staging / model / SPAN_EDGES_FILE)
    return tokenizer, edges


def _publish(staging: Path, repository: Path, version: int, int8_passed: bool) -> None:
    """Move the staged version into the repository (the INT8 models only when they passed their gate)."""
    from monitoring.estimation import ESTIMATION_FILE
    from monitoring.vocabulary import VOCABULARY_FILE

    for pipeline, encoder in PIPELINE_ENCODERS.items():
        link_or_copy(staging / encoder / FP32_FILE, staging / pipeline / FP32_FILE)
        for name in (VOCABULARY_FILE, ESTIMATION_FILE):  # what the decoder's profile rows need
            if (staging / pipeline / name).exists():
                link_or_copy(staging / pipeline / name, staging / PIPELINE_DECODERS[pipeline] / name)
    install_configs(repository)
    for model in MODELS:
        if int8_passed or model not in INT8_MODELS:
            (staging / model).rename(repository / model / str(version))


def export_model(
    model_dir: Path,
    repository: Path,
    *,
    test: Sequence[Sentence],
    lineage: dict[str, Any],
    decoder: str = "viterbi",
    threads: int = 1,
    train: Sequence[Sentence] | None = None,
    calibration: Sequence[Sentence] | None = None,
) -> int:
    """Export ``model_dir`` as the next version of every model in the Triton ``repository``.

    Raises ExportRefused, leaving the repository untouched, when the parity gate fails; the INT8
    encoder (and the ner_int8 model) is published only when it passes its quality gate. Returns the version.
    ``train``: the training sentences, whose words become the served models' ``train_vocabulary.txt``
    (without it, live profiles carry no out-of-vocabulary rate). ``calibration``: labelled sentences held out of
    training (TrainFlow's dev split) the accuracy estimate of live windows is calibrated on (without them, live
    profiles carry no estimate; :mod:`monitoring.estimation`).
    """

    repository.mkdir(parents=True, exist_ok=True)
    version = next_version(repository)
    staging = repository / f".staging-{version}"
    try:
        tokenizer, edges = _stage(staging, model_dir)
        encoder_dir, int8_dir = staging / "ner_encoder", staging / "ner_encoder_int8"
        export_onnx(model_dir, encoder_dir / FP32_FILE)
        served = {"ner": ort_encoder(encoder_dir / FP32_FILE, threads)}  # served model -> its encoder
        parity, fp32_metrics = parity_gate(tokenizer, torch_reference(model_dir), served["ner"], test, decoder,
                                           edges)
        if not parity.passed:
            raise ExportRefused(f"parity gate failed: {json.dumps(parity.details)}")
        def gate(path: Path) -> tuple[GateReport, dict]:
            served["ner_int8"] = ort_encoder(path, threads)  # the last one tried: the file left in int8_dir
            return int8_gate(tokenizer, served["ner_int8"], test, fp32_metrics["entity_f1"], decoder, edges)

        int8, int8_metrics, tried = quantize_within_gate(encoder_dir / FP32_FILE, int8_dir / FP32_FILE, gate)
        write_monitoring_reference(staging, served, test, tokenizer, train, decoder, edges, calibration)
        record = {
            **lineage, "version": version, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "exporter": f"torch.onnx.export (TorchScript), opset {ONNX_OPSET}", "decode": decoder,
            "span_edges": bool(edges and (edges.never_first or edges.never_last)),
            "crf_layer": bool(edges and edges.learned is not None),
            "metrics_fp32": fp32_metrics, "metrics_int8": int8_metrics,
            "gates": {"parity": {"passed": parity.passed, **parity.details},
                      "int8_quality": {"passed": int8.passed, "published": int8.passed, **int8.details,
                                       "recipe": tried[-1]["recipe"], "tried": tried}},
            "package_versions": package_versions(), "code_version": code_version(),
        }
        (encoder_dir / "lineage.json").write_text(json.dumps(record, indent=2))
        _publish(staging, repository, version, int8.passed)
        return version
    finally:
        shutil.rmtree(staging, ignore_errors=True)
