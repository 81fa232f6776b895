"""Fuzz the served ``ner`` model with bad and odd input, through the medner client and raw tritonclient calls.

    python benchmarks/fuzz.py [--cases 10000] [--seed 0] [--url HOST:PORT] [--repository model_repository]

Generated notes (hypothesis): any Unicode text (control characters, NUL, emoji, CJK, right-to-left),
whitespace- and format-character-only text, empty notes, clinical words mixed with odd characters, and raw
bytes (mostly invalid UTF-8); each list of notes goes as one raw gRPC request and through ``NerClient``.
Then fixed hard cases: a 1 MiB note, 10,000 notes in one request and through the client, wrong dtype and
shape, missing and extra inputs, unknown model name and version. Every case must end in a valid result
(entities inside the note, label D/T, text equal to the note's slice) or a clear per-request error
(INVALID_ARG for bad input, with a message that does not quote the note); the server must stay live and
return the same entities for known notes before and after. Without ``--url`` it starts its own tritonserver
on free 127.0.0.1 ports. Writes benchmarks/results/fuzz.md (``--out``) with the outcome table.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medner.inference import DEFAULT_MAX_NOTE_CHARS, NoteError, validate_note  # noqa: E402

# What the server may answer to a bad note (medner.inference.validate_note); anything else is a finding.
NOTE_ERROR = re.compile(r"note is not valid UTF-8 \(byte \d+\)|note is empty|note has \d+ characters; the limit is \d+")
CLINICAL = ["asthma", "breast", "cancer", "tamoxifen", "metformin", "type", "2", "diabetes", "with", "treated",
            "hypertension", "beta", "blockers", ".", ",", ";", "(", ")", "10", "mg", "surgery", "patients"]
ODD = ["\x00", "\x07", "\x1b", "\r\n", "\t", "\u200b", "\u200e", "\u202e", "\ufeff", "\u00a0", "\u2028", "\u3000",
       "😀", "👩🏽‍⚕️", "🇫🇷", "患者", "糖尿病", "مريض", "סוכרת", "e\u0301", "ﬁ", "Ⅻ", "\U0001d400", "\ufffd", "İ"]


@dataclass
class Tally:
    """Outcome counts per (path, category), plus findings (anything that is neither a valid result nor a
    clear per-request error). ``cases`` counts generated notes per path."""

    outcomes: Counter = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)
    cases: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)  # wall time per path

    def add(self, path: str, category: str, count: int = 1) -> None:
        self.outcomes[(path, category)] += count

    def finding(self, path: str, what: str) -> None:
        self.outcomes[(path, "FINDING")] += 1
        if len(self.findings) < 50:
            self.findings.append(f"{path}: {what}")

    def table(self) -> str:
        lines = ["| path | outcome | count |", "| --- | --- | ---: |"]
        lines += [f"| {path} | {category} | {count} |" for (path, category), count in sorted(self.outcomes.items())]
        lines += ["", "Wall time per path: " + ", ".join(f"{p} {s:.1f} s" for p, s in sorted(self.seconds.items()))]
        return "\n".join(lines)


def expected_error(note: str | bytes, max_chars: int) -> str | None:
    """Why the server must refuse ``note`` (the same check as the server's), or None if it must serve it."""
    try:
        validate_note(note, max_chars)
    except NoteError as err:
        return str(err)
    return None


def error_category(message: str) -> str:
    for key, name in (("UTF-8", "not UTF-8"), ("empty", "empty"), ("characters; the limit", "too long")):
        if key in message:
            return name
    return "other"


def check_entities(note: str | bytes, entities: object) -> str | None:
    """What is wrong with the entities returned for ``note`` (None: nothing)."""
    text = note.decode("utf-8") if isinstance(note, bytes) else note
    if not isinstance(entities, list):
        return f"entities are {type(entities).__name__}, not a list"
    previous_end = 0
    for e in entities:
        if not isinstance(e, dict) or set(e) != {"label", "start", "end", "text", "score"}:
            return f"malformed entity keys {sorted(e) if isinstance(e, dict) else type(e).__name__}"
        if e["label"] not in ("D", "T"):
            return f"label {e['label']!r}"
        if not (isinstance(e["start"], int) and isinstance(e["end"], int) and 0 <= e["start"] < e["end"] <= len(text)):
            return f"offsets {e['start']}..{e['end']} outside a note of {len(text)} characters"
        if e["start"] < previous_end:
            return f"entity at {e['start']} overlaps the previous one (ends {previous_end})"
        if e["text"] != text[e["start"]: e["end"]]:
            return f"entity text differs from note[{e['start']}:{e['end']}]"
        if not (isinstance(e["score"], float | int) and math.isfinite(e["score"]) and 0 <= e["score"] <= 1):
            return f"score {e['score']!r}"
        previous_end = e["end"]
    return None


def quotes_note(message: str, notes: Sequence[str | bytes]) -> bool:
    """Does an error message repeat a note's text (notes of 6+ characters: shorter ones match by chance)?"""
    for note in notes:
        text = note.decode("utf-8", "replace") if isinstance(note, bytes) else note
        if len(text.strip()) >= 6 and text.strip() in message:
            return True
    return False


def bytes_input(module: object, payloads: Sequence[bytes], name: str = "TEXT") -> object:
    text = module.InferInput(name, [len(payloads), 1], "BYTES")
    text.set_data_from_numpy(np.array([[p] for p in payloads], dtype=np.object_))
    return text


def payload(note: str | bytes) -> bytes:
    return note.encode("utf-8") if isinstance(note, str) else note


class Fuzzer:
    """Sends notes through a raw tritonclient gRPC client and the medner ``NerClient`` and tallies outcomes."""

    def __init__(self, url: str, model: str = "ner", max_chars: int = DEFAULT_MAX_NOTE_CHARS,
                 tally: Tally | None = None):
        import tritonclient.grpc as grpcclient

        from clients.ner_client import NerClient

        self.url, self.model, self.max_chars = url, model, max_chars
        self.grpc = grpcclient
        self.raw = grpcclient.InferenceServerClient(url)
        self.client = NerClient(url, model=model, retries=0)
        self.tally = tally or Tally()

    def close(self) -> None:
        self.client.close()
        self.raw.close()

    def raw_request(self, notes: Sequence[str | bytes], path: str = "raw") -> None:
        """One request holding every note: served whole, or refused whole if any note is bad."""
        from tritonclient.utils import InferenceServerException

        reasons = [expected_error(n, self.max_chars) for n in notes]
        try:
            result = self.raw.infer(self.model, [bytes_input(self.grpc, [payload(n) for n in notes])],
                                    client_timeout=120)
        except InferenceServerException as err:
            message, status = err.message() or "", str(err.status())
            if not any(reasons):
                self.tally.finding(path, f"valid notes refused: {status} {message[:200]}")
            elif status != "StatusCode.INVALID_ARGUMENT" or not NOTE_ERROR.search(message):
                self.tally.finding(path, f"unclear error: {status} {message[:200]}")
            elif quotes_note(message, notes):
                self.tally.finding(path, "error message quotes a note")
            else:
                self.tally.add(path, f"INVALID_ARG: {error_category(message)} (whole request refused)")
                self.tally.add(path, "notes in refused requests", len(notes))
            return
        if any(reasons):
            self.tally.finding(path, f"bad note served ({next(r for r in reasons if r)})")
            return
        import json

        rows = result.as_numpy("ENTITIES")
        if rows is None or rows.shape != (len(notes), 1):
            self.tally.finding(path, f"ENTITIES shape {None if rows is None else rows.shape} for {len(notes)} notes")
            return
        for note, row in zip(notes, rows):
            problem = check_entities(note, json.loads(row[0]))
            if problem:
                self.tally.finding(path, problem)
            else:
                self.tally.add(path, "served: valid entities")

    def client_request(self, notes: Sequence[str | bytes], path: str = "NerClient") -> None:
        """The notes through ``NerClient.extract``: each note gets its entities or its own error."""
        from clients.ner_client import NerRequestError

        results = self.client.extract(list(notes), return_exceptions=True)
        for index, (note, result) in enumerate(zip(notes, results)):
            reason = expected_error(note, self.max_chars)
            if isinstance(result, NerRequestError):
                message = str(result)
                if reason is None:
                    self.tally.finding(path, f"valid note refused: {result.status} {message[:200]}")
                elif (result.status != "StatusCode.INVALID_ARGUMENT" or result.index != index
                      or not NOTE_ERROR.search(message)):
                    self.tally.finding(path, f"unclear error: {result.status} {message[:200]}")
                elif quotes_note(message, [note]):
                    self.tally.finding(path, "error message quotes the note")
                else:
                    self.tally.add(path, f"INVALID_ARG: {error_category(message)}")
            elif reason is not None:
                self.tally.finding(path, f"bad note served ({reason})")
            else:
                problem = check_entities(note, result)
                if problem:
                    self.tally.finding(path, problem)
                else:
                    self.tally.add(path, "served: valid entities")

    def generated(self, notes: Sequence[str | bytes]) -> None:
        """One generated list: as one raw request (refused whole if a note is bad; then the good notes alone
        as a second request, which must be served) and through ``NerClient`` (each note on its own)."""
        self.tally.cases["raw"] += len(notes)
        self.tally.cases["NerClient"] += len(notes)
        started = time.monotonic()
        self.raw_request(notes)
        good = [n for n in notes if expected_error(n, self.max_chars) is None]
        if good and len(good) < len(notes):
            self.raw_request(good, "raw (good notes of a refused request)")
        self.tally.seconds["raw"] += time.monotonic() - started
        started = time.monotonic()
        self.client_request(notes)
        self.tally.seconds["NerClient"] += time.monotonic() - started

    # --- fixed hard cases ---------------------------------------------------------------------

    def expect_error(self, name: str, call: Callable[[], object], statuses: set[str], pattern: str,
                     path: str = "raw hard case") -> None:
        """``call`` must fail with one of ``statuses`` and a message matching ``pattern``."""
        from tritonclient.utils import InferenceServerException

        try:
            call()
        except InferenceServerException as err:
            status, message = str(err.status()), err.message() or ""
            if status in statuses and re.search(pattern, message):
                self.tally.add(path, f"{name}: {status.split('.')[-1]}")
            else:
                self.tally.finding(path, f"{name}: unclear error {status} {message[:200]}")
            return
        self.tally.finding(path, f"{name}: served")

    def hard_cases(self, big_note_chars: int = 64_000, many_notes: int = 10_000, client_notes: int = 10_000) -> None:
        """The fixed cases: sizes at and past the limits, malformed tensors, unknown models (``client_notes``
        of the ``many_notes`` also go through ``AsyncNerClient``)."""
        started = time.monotonic()
        grpc, raw, model = self.grpc, self.raw, self.model
        invalid = {"StatusCode.INVALID_ARGUMENT"}
        words = " ".join(CLINICAL * 200)

        mib = (words * (2**20 // len(words) + 1))[: 2**20]  # a 1 MiB note, past the character limit
        self.expect_error("1 MiB note", lambda: raw.infer(model, [bytes_input(grpc, [mib.encode()])]), invalid,
                          rf"note has 1048576 characters; the limit is {self.max_chars}")
        self.client_request([mib], "NerClient hard case")
        big = (words * (big_note_chars // len(words) + 1))[:big_note_chars]
        self.raw_request([big], "raw hard case")  # a long note under the limit is served in windows
        self.client_request([" " * 2**20], "NerClient hard case")  # 1 MiB of whitespace: empty
        # a word longer than a window at the end of a sentence (this crashed _window_bounds once)
        self.raw_request(["患" * 200, "x " + "患" * 200, "x " + "-".join(["ab"] * 100), "a" * 2000,
                          "asthma " + "患" * 500 + ". tamoxifen", "x " + "https://example.org/" + "ab/c" * 300],
                         "raw hard case")

        # 10,000 notes: one raw request is past max_batch_size (refused whole); the client batches them.
        notes = [CLINICAL[i % len(CLINICAL)] + f" {i}" for i in range(many_notes)]
        self.expect_error(f"{many_notes} notes in one request",
                          lambda: raw.infer(model, [bytes_input(grpc, [n.encode() for n in notes])]), invalid,
                          r"batch-size must be <= \d+")
        limit = raw.get_model_config(model).config.max_batch_size
        self.raw_request(notes[:limit], "raw hard case")  # max_batch_size: served
        self.expect_error(f"{limit + 1} notes in one request",
                          lambda: raw.infer(model, [bytes_input(grpc, [n.encode() for n in notes[:limit + 1]])]),
                          invalid, rf"batch-size must be <= {limit}\b")
        self.async_many(notes[:client_notes])

        def tensor(name: str, shape: list[int], dtype: str, data: np.ndarray) -> object:
            item = grpc.InferInput(name, shape, dtype)
            item.set_data_from_numpy(data)
            return item

        shape_error = r"unexpected shape|shape|dims|batch-size"
        cases = {
            "INT32 TEXT": ([tensor("TEXT", [1, 1], "INT32", np.array([[7]], dtype=np.int32))], r"data-?type"),
            "FP32 TEXT": ([tensor("TEXT", [2, 1], "FP32", np.ones((2, 1), dtype=np.float32))], r"data-?type"),
            "rank 1 TEXT": ([tensor("TEXT", [2], "BYTES", np.array([b"asthma", b"x"], dtype=np.object_))],
                            shape_error),
            "rank 3 TEXT": ([tensor("TEXT", [1, 1, 1], "BYTES", np.array([[[b"asthma"]]], dtype=np.object_))],
                            shape_error),
            "two notes per row": ([tensor("TEXT", [1, 2], "BYTES", np.array([[b"asthma", b"x"]], dtype=np.object_))],
                                  shape_error),
            "zero notes": ([tensor("TEXT", [0, 1], "BYTES", np.zeros((0, 1), dtype=np.object_))],
                           f"{shape_error}|string elements"),
            "zero-width row": ([tensor("TEXT", [1, 0], "BYTES", np.zeros((1, 0), dtype=np.object_))], shape_error),
            "missing input": ([], r"expected 1 inputs|input"),
            "extra input": ([bytes_input(grpc, [b"asthma"]), bytes_input(grpc, [b"asthma"], "EXTRA")],
                            r"unexpected inference input|EXTRA"),
            "misnamed input": ([bytes_input(grpc, [b"asthma"], "TEXTS")], r"input"),
        }
        for name, (inputs, pattern) in cases.items():
            self.expect_error(name, lambda inputs=inputs: raw.infer(model, inputs), invalid, pattern)
        unknown = {"StatusCode.NOT_FOUND", "StatusCode.UNAVAILABLE", "StatusCode.INVALID_ARGUMENT"}
        self.expect_error("unknown model name", lambda: raw.infer("no_such_model", [bytes_input(grpc, [b"x"])]),
                          unknown, r"unknown model|not found|no_such_model")
        self.expect_error("unknown model version",
                          lambda: raw.infer(model, [bytes_input(grpc, [b"x"])], model_version="999"),
                          unknown, r"unknown model|not found|version|999")
        self.client_unknown_model()
        self.tally.seconds["hard cases"] += time.monotonic() - started

    def client_unknown_model(self) -> None:
        """The medner client names the model; an unknown one is a clear error, not a retry loop."""
        from clients.ner_client import NerClient, NerRequestError

        with NerClient(self.url, model="no_such_model", retries=0) as client:
            try:
                client.extract(["asthma"])
            except NerRequestError as err:
                self.tally.add("NerClient hard case", f"unknown model name: {err.status.split('.')[-1]}")
                return
        self.tally.finding("NerClient hard case", "unknown model served")

    def async_many(self, notes: Sequence[str]) -> None:
        """``AsyncNerClient.extract`` of many notes: split into requests under max_batch_size, all served."""
        from clients.ner_client import AsyncNerClient

        async def run() -> list:
            async with AsyncNerClient(self.url, model=self.model, retries=0, batch_size=64, concurrency=4) as client:
                return await client.extract(notes, return_exceptions=True)

        results = asyncio.run(run())
        problems = [p for note, r in zip(notes, results) if (p := check_entities(note, r) if isinstance(r, list)
                                                             else f"refused: {r}")]
        if problems or len(results) != len(notes):
            self.tally.finding("AsyncNerClient hard case", f"{len(problems)} of {len(notes)} notes: {problems[:1]}")
        else:
            self.tally.add("AsyncNerClient hard case", f"{len(notes)} notes in one call: all served")

    def live(self) -> bool:
        return bool(self.raw.is_server_live() and self.raw.is_model_ready(self.model))


def note_strategy() -> object:
    """Hypothesis strategy for one note: str (odd Unicode, whitespace, clinical words) or raw bytes."""
    from hypothesis import strategies as st

    return st.one_of(
        st.text(max_size=120),  # any code point but surrogates: control chars, NUL, emoji, CJK, RTL, ...
        st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn"]), max_size=12),  # invisible only
        st.text(st.sampled_from(list(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u2029\u3000")), max_size=8),
        st.text(min_size=1, max_size=300),
        st.lists(st.sampled_from(CLINICAL + ODD) | st.text(max_size=6), min_size=1, max_size=40).map(" ".join),
        st.lists(st.sampled_from(CLINICAL + ODD), min_size=1, max_size=30).map("".join),
        # one word of more word-pieces than a window (128): a CJK run (a piece per character) or a hyphenated
        # chain (a piece per part and hyphen); BERT makes a single [UNK] of other long words
        st.tuples(st.sampled_from(["", "x ", "asthma. ", "患者 "]),
                  st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=60, max_size=300)
                  | st.lists(st.text("abc123", min_size=1, max_size=3), min_size=30, max_size=120).map("-".join)
                  ).map("".join),
        st.binary(max_size=64),  # mostly invalid UTF-8
        st.text(max_size=40).map(lambda t: t.encode("utf-8") + b"\xff" + t.encode("utf-8")),  # one bad byte
    )


def fuzz_generated(fuzzer: Fuzzer, examples: int, max_notes: int = 32, seed: int | None = None) -> None:
    """``examples`` hypothesis-generated lists of up to ``max_notes`` notes, each sent both ways.
    Deterministic (``derandomize``) unless ``seed`` is given."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    options = dict(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
                   suppress_health_check=list(HealthCheck), print_blob=False)

    @settings(**options)
    @given(st.lists(note_strategy(), min_size=max(1, max_notes // 4), max_size=max_notes))
    def run(notes: list) -> None:
        fuzzer.generated(notes)

    if seed is not None:
        run = hypothesis_seed(seed)(run)
    run()


def known_entities(url: str, notes: Sequence[str]) -> list:
    from clients.ner_client import NerClient

    with NerClient(url) as client:
        return client.extract(notes)


def fuzz_all(url: str, cases: int, seed: int | None = None, max_notes: int = 32) -> tuple[Tally, dict]:
    """The whole fuzz run: known notes, generated notes until ``cases`` per path, hard cases, known notes again."""
    from tests.notes import NOTES

    before = known_entities(url, NOTES)
    fuzzer = Fuzzer(url)
    started = time.monotonic()
    try:
        while fuzzer.tally.cases["raw"] < cases:
            missing = cases - fuzzer.tally.cases["raw"]  # a list averages ~max_notes/3 notes
            fuzz_generated(fuzzer, max(1, math.ceil(missing / (max_notes / 3))), max_notes, seed)
            seed = 1 if seed is None else seed + 1  # a derandomized round repeats itself: go on with seeds
        generated_s = time.monotonic() - started
        fuzzer.hard_cases()
        live = fuzzer.live()
    finally:
        fuzzer.close()
    after = known_entities(url, NOTES)
    summary = {"generated_cases": dict(fuzzer.tally.cases), "generated_s": round(generated_s, 1),
               "total_s": round(time.monotonic() - started, 1), "live_after": live,
               "known_notes_unchanged": before == after, "known_notes": len(NOTES)}
    return fuzzer.tally, summary


def write_report(tally: Tally, summary: dict, out: Path, command: str, target: str) -> Path:
    from benchmarks.common import hardware

    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Fuzz run", "",
        f"- command: `{command}`",
        f"- target: {target}",
        f"- hardware: {hardware()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- generated notes per path: {summary['generated_cases']} (hypothesis lists of notes; raw: one gRPC "
        f"request per list, NerClient: 8 notes per request, a refused request retried note by note)",
        f"- time: {summary['generated_s']} s generated, {summary['total_s']} s with the hard cases",
        f"- server live and model ready afterwards: {summary['live_after']}",
        f"- {summary['known_notes']} known notes return the same entities before and after: "
        f"{summary['known_notes_unchanged']}",
        f"- findings (neither a valid result nor a clear per-request error): {len(tally.findings)}", "",
        tally.table(), "",
    ]
    if tally.findings:
        lines += ["## Findings", "", *[f"- {f}" for f in tally.findings], ""]
    report = out / "fuzz.md"
    report.write_text("\n".join(lines))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="generated notes (each sent both ways)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: derandomized)")
    parser.add_argument("--url", default=None, help="an already running server (default: start one)")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    command = "python benchmarks/fuzz.py " + " ".join(sys.argv[1:] if argv is None else argv)
    from benchmarks.serving import served_versions

    if args.url:
        tally, summary = fuzz_all(args.url, args.cases, args.seed)
        target, served = args.url, served_versions(args.url, ("ner",))["ner"]
    else:
        from medner.triton import TritonServer

        only_ner = ["--model-control-mode=explicit", "--load-model=ner"]
        with TritonServer.on_free_ports(args.repository, extra_args=only_ner) as server:
            tally, summary = fuzz_all(server.grpc_url, args.cases, args.seed)
            served = served_versions(server.grpc_url, ("ner",))["ner"]
        target = f"own tritonserver on 127.0.0.1 serving {args.repository}"
    target += (f" (model ner, version(s) {', '.join(map(str, served))} as the server reported after the run)"
               if served else " (model ner; the server reported no version after the run)")
    report = write_report(tally, summary, args.out, command, target)
    print(report.read_text())
    return 1 if tally.findings or not summary["live_after"] or not summary["known_notes_unchanged"] else 0


if __name__ == "__main__":
    sys.exit(main())
