"""The `ner` models on a real Triton server: raw tritonclient calls, good and bad."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from clients.local import LocalNerModel
from tests.notes import NOTES

pytestmark = pytest.mark.slow


def infer_text(client: grpcclient.InferenceServerClient, payloads: list[bytes], model: str = "ner") -> list:
    text = grpcclient.InferInput("TEXT", [len(payloads), 1], "BYTES")
    text.set_data_from_numpy(np.array([[p] for p in payloads], dtype=np.object_))
    result = client.infer(model, [text])
    return [json.loads(row[0]) for row in result.as_numpy("ENTITIES")]


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


def test_a_long_note_is_windowed_not_truncated(client) -> None:
    long_note = NOTES[-1]
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

    def call(payload: bytes):
        client = grpcclient.InferenceServerClient(triton_server.grpc_url)
        try:
            return infer_text(client, [payload])[0]
        except InferenceServerException as err:
            return err

    with ThreadPoolExecutor(16) as pool:  # concurrent, so the dynamic batcher mixes good and bad
        results = list(pool.map(call, payloads))
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
