"""The `ner` models on a real Triton server: raw tritonclient calls, good and bad."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from clients.local import LocalNerModel
from tests.notes import LONG_NOTE, NOTES

pytestmark = pytest.mark.slow


def infer_text(client: grpcclient.InferenceServerClient, payloads: list[bytes], model: str = "ner") -> list:
    text = grpcclient.InferInput("TEXT", [len(payloads), 1], "BYTES")
    text.set_data_from_numpy(np.array([[p] for p in payloads], dtype=np.object_))
    result = client.infer(model, [text])
    return [json.loads(row[0]) for row in result.as_numpy("ENTITIES")]


def infer_one_or_error(url: str, payload: bytes) -> list | InferenceServerException:
    """One note in its own request on a new connection: its entities, or the server's error."""
    client = grpcclient.InferenceServerClient(url)
    try:
        return infer_text(client, [payload])[0]
    except InferenceServerException as err:
        return err


@pytest.fixture(scope="module")
def client(triton_server):
    return grpcclient.InferenceServerClient(triton_server.grpc_url)


@pytest.mark.parametrize("model", ["ner", "ner_int8"])
def test_served_entities_equal_in_process_ones(client, exported_repository, model) -> None:
    local = LocalNerModel(exported_repository, model).extract(NOTES)
    served = infer_text(client, [n.encode() for n in NOTES], model)
    assert served == local
    assert sum(len(e) for e in served) > 0
    for note, entities in zip(NOTES, served):
        for e in entities:
            assert note[e["start"]:e["end"]] == e["text"]


@pytest.mark.parametrize("model", ["ner", "ner_int8"])
def test_each_note_s_uncertainty_is_served_beside_its_entities(client, exported_repository, model) -> None:
    text = grpcclient.InferInput("TEXT", [len(NOTES), 1], "BYTES")
    text.set_data_from_numpy(np.array([[n.encode()] for n in NOTES], dtype=np.object_))
    served = client.infer(model, [text]).as_numpy("UNCERTAINTY")
    local = LocalNerModel(exported_repository, model).extract(NOTES, with_uncertainty=True)
    assert served.shape == (len(NOTES), 1) and served.dtype == np.float32
    assert served[:, 0] == pytest.approx([note.uncertainty for note in local], abs=1e-6)
    assert 0 <= served.min() and served.max() < 1 and len(set(served[:, 0].tolist())) > 1


def test_a_long_note_is_windowed_not_truncated(client) -> None:
    long_note = LONG_NOTE
    assert len(long_note.split()) >= 5000
    [entities] = infer_text(client, [long_note.encode()])
    assert max(e["end"] for e in entities) > 0.98 * len(long_note)  # tagged to the very end
    assert all(long_note[e["start"]:e["end"]] == e["text"] for e in entities)


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"", "note is empty"), (b" \n\t ", "note is empty"), (b"ok \xff\xfe then", "not valid UTF-8")],
)
def test_bad_notes_get_their_own_error(client, payload: bytes, message: str) -> None:
    with pytest.raises(InferenceServerException, match=message) as info:
        infer_text(client, [payload])
    assert "INVALID_ARG" in str(info.value.status())
    assert infer_text(client, [NOTES[0].encode()])[0] is not None  # still serving


def test_wrong_dtype_and_shape_are_refused(client) -> None:
    numbers = grpcclient.InferInput("TEXT", [1, 1], "INT32")
    numbers.set_data_from_numpy(np.array([[7]], dtype=np.int32))
    with pytest.raises(InferenceServerException, match="(?i)data.?type|datatype"):
        client.infer("ner", [numbers])
    wide = grpcclient.InferInput("TEXT", [1, 2], "BYTES")
    wide.set_data_from_numpy(np.array([[b"a", b"b"]], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="(?i)shape"):
        client.infer("ner", [wide])
    with pytest.raises(InferenceServerException, match="(?i)unknown model|not found"):
        client.infer("no_such_model", [wide])


def test_bad_requests_do_not_fail_the_rest_of_a_batch(triton_server, exported_repository) -> None:
    expected = LocalNerModel(exported_repository).extract(NOTES[:3])
    payloads = [b"", NOTES[0].encode(), b"\xff", NOTES[1].encode(), b"  ", NOTES[2].encode()] * 8

    with ThreadPoolExecutor(16) as pool:  # concurrent, so the dynamic batcher mixes good and bad
        results = list(pool.map(lambda payload: infer_one_or_error(triton_server.grpc_url, payload), payloads))
    for payload, result in zip(payloads, results):
        if payload.strip() and payload != b"\xff":
            assert result == expected[[n.encode() for n in NOTES[:3]].index(payload)]
        else:
            assert isinstance(result, InferenceServerException)


def test_encoder_takes_token_ids_directly(client, exported_repository) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported_repository / "ner_tokenize" / "1")
    ids = np.array([tokenizer("Asthma treated with steroids")["input_ids"]], dtype=np.int64)[:, None, :]
    inputs = []
    for name, array in (("input_ids", ids), ("attention_mask", np.ones_like(ids))):
        tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    logits = client.infer("ner_encoder", inputs).as_numpy("logits")
    assert logits.shape == (*ids.shape, 5) and np.isfinite(logits).all()


# The head of a faulty model.py: it loads the real model (copied beside it as served_model.py) as ``served_model``
SERVED_MODEL_LOADER = '''import importlib.util
import os

_here = os.path.dirname(__file__)
_spec = importlib.util.spec_from_file_location("served_model", os.path.join(_here, "served_model.py"))
served_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(served_model)
'''

FAULTY_MODEL = '''"""The real ner model (served_model.py beside this file) whose pipeline fails every call that
includes a note with the word BREAK, the way a note that breaks tokenization or encoding would."""
''' + SERVED_MODEL_LOADER + '''

class FaultyPipeline:
    def __init__(self, pipeline):
        self.pipeline, self.max_note_chars = pipeline, pipeline.max_note_chars

    def decoded(self, notes):
        if any("BREAK" in note for note in notes):
            raise RuntimeError("cannot tag " + " | ".join(notes))  # quotes the notes: must not reach the client
        return self.pipeline.decoded(notes)


class TritonPythonModel(served_model.TritonPythonModel):
    def initialize(self, args):
        super().initialize(args)
        self.pipeline = FaultyPipeline(self.pipeline)
'''


def test_a_request_that_breaks_the_batch_fails_alone(exported_repository, tmp_path) -> None:
    """The fallback of model_repository/ner/model.py: when tagging a dynamic batch fails, each request is
    tagged alone, so only the one that breaks the pipeline fails, with no note text in its error."""
    import re
    import shutil

    from medner.triton import TritonServer

    repository = tmp_path / "repository"
    shutil.copytree(exported_repository / "ner", repository / "ner", ignore=shutil.ignore_patterns("configs"))
    config = repository / "ner" / "config.pbtxt"
    # one instance that waits for 4 requests (up to a minute) and runs them as one batch: the batch is certain
    batching = "dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 60000000 }"
    config.write_text(re.sub(r"count: \d+", "count: 1", config.read_text()).replace("dynamic_batching { }", batching))
    version = repository / "ner" / "1"
    (version / "model.py").rename(version / "served_model.py")
    (version / "model.py").write_text(FAULTY_MODEL)
    payloads = [NOTES[0].encode(), b"BREAK: secret-note-text", NOTES[1].encode(), NOTES[2].encode()]
    expected = LocalNerModel(exported_repository).extract([NOTES[0], NOTES[1], NOTES[2]])

    with TritonServer.on_free_ports(repository, log_file=tmp_path / "server.log") as server:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda payload: infer_one_or_error(server.grpc_url, payload), payloads))
        statistics = grpcclient.InferenceServerClient(server.grpc_url).get_inference_statistics("ner", as_json=True)
    [batches] = [s["batch_stats"] for s in statistics["model_stats"]]
    assert [int(b["batch_size"]) for b in batches] == [4]  # the four requests ran as one batch, which failed
    assert [results[0], results[2], results[3]] == expected
    failed = results[1]
    assert isinstance(failed, InferenceServerException)
    assert "the model failed on this request (RuntimeError)" in str(failed) and "secret" not in str(failed)
