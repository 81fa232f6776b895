"""Fuzzed and malformed input against the real Triton server (the session ``triton_server``), through the
medner clients and raw tritonclient gRPC calls: every case gets a valid result or a clear per-request
error, the server stays up, and known notes give the same entities before and after."""

from __future__ import annotations

import pytest

from benchmarks.fuzz import Fuzzer, Tally, check_entities, expected_error, fuzz_generated, known_entities
from tests.notes import NOTES

pytestmark = pytest.mark.slow

GENERATED = 1_000  # notes, each sent both ways


@pytest.fixture(scope="module")
def tally() -> Tally:
    return Tally()


@pytest.fixture(scope="module")
def before(triton_server) -> list:
    return known_entities(triton_server.grpc_url, NOTES)


def test_generated_notes(triton_server, before, tally: Tally) -> None:
    fuzzer = Fuzzer(triton_server.grpc_url, tally=tally)
    try:
        examples = 0
        while tally.cases["raw"] < GENERATED and examples < 1000:  # a list averages ~12 notes
            fuzz_generated(fuzzer, 50, max_notes=32, seed=None if examples == 0 else examples)
            examples += 50
    finally:
        fuzzer.close()
    assert tally.cases["raw"] >= GENERATED and tally.cases["NerClient"] >= GENERATED
    assert not tally.findings, "\n".join(tally.findings)
    served = tally.outcomes[("NerClient", "served: valid entities")]
    refused = sum(n for (path, category), n in tally.outcomes.items()
                  if path == "NerClient" and category.startswith("INVALID_ARG"))
    assert served > 100 and refused > 100 and served + refused == tally.cases["NerClient"]
    raw_served = sum(n for (path, category), n in tally.outcomes.items()
                     if path.startswith("raw") and category == "served: valid entities")
    assert raw_served == served  # the raw path served the same valid notes (alone or with their request)


def test_hard_cases(triton_server, tally: Tally) -> None:
    fuzzer = Fuzzer(triton_server.grpc_url, tally=tally)
    try:
        fuzzer.hard_cases(big_note_chars=64_000, many_notes=10_000, client_notes=1_000)
        assert fuzzer.live()
    finally:
        fuzzer.close()
    assert not tally.findings, "\n".join(tally.findings)
    names = {category.split(":")[0] for path, category in tally.outcomes if "hard case" in path}
    assert {"1 MiB note", "10000 notes in one request", "INT32 TEXT", "rank 3 TEXT", "missing input",
            "extra input", "unknown model name", "unknown model version", "1000 notes in one call"} <= names


def test_server_unchanged_after_fuzz(triton_server, before, tally: Tally) -> None:
    assert known_entities(triton_server.grpc_url, NOTES) == before
    print("\nfuzz outcomes (pytest -s shows this):\n" + tally.table())


def test_oracle_checks_catch_bad_answers() -> None:
    """The checks the fuzz relies on do fail on wrong answers (so a passing fuzz means something)."""
    note = "asthma and tamoxifen"
    good = [{"label": "D", "start": 0, "end": 6, "text": "asthma", "score": 0.9}]
    assert check_entities(note, good) is None
    assert "offsets" in check_entities(note, [{**good[0], "end": 99}])
    assert "text differs" in check_entities(note, [{**good[0], "text": "asthm"}])
    assert "label" in check_entities(note, [{**good[0], "label": "X"}])
    assert "overlaps" in check_entities(note, good + [{**good[0], "start": 3, "end": 8, "text": note[3:8]}])
    assert expected_error(b"\xff", 10) and expected_error(" \n", 10) and expected_error("x" * 11, 10)
    assert expected_error("\x00", 10) is None  # NUL is text, not whitespace: served
