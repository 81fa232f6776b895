"""The serving hot path with the encoder on a CUDA GPU: PyTorch fp32 vs fp16, side by side in one run.

    python benchmarks/gpu_check.py --model MODEL_DIR --data DATA_DIR [--rounds 3] [--out FILE.md]
    python benchmarks/gpu_check.py --from-json FILE.json [--out FILE.md]   # re-render a saved run

MODEL_DIR is a saved token classifier (``medner.model_io.save_model``; a TrainFlow run's ``model_files``),
DATA_DIR a BeHealthy folder with ``test_sent``/``test_label``. Measured, interleaved round by round:

* encoder only: the test split's windows (pre-tokenized), length-sorted micro-batches -> windows/s;
* end to end: tokenize (CPU) -> encode (GPU) -> BIO-constrained Viterbi (CPU), the code the ``ner`` Triton
  model runs (:func:`medner.inference.extract`), on sentences and on 8-sentence notes -> notes/s, and the
  share of time each stage takes;
* entity F1 on the test split in fp32 and fp16 (the serving decode).

It also reports which accelerated runtimes this machine has (TensorRT, ONNX Runtime providers), since the
GPU Triton repository (``configs/gpu.pbtxt``) needs Triton's onnxruntime backend with TensorRT.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from medner.data import read_behealthy_pair  # noqa: E402
from medner.inference import (  # noqa: E402
    decode_notes,
    encode_sorted,
    note_rows,
    predict_sentences,
    tokenize_notes,
    torch_encoder,
)
from medner.metrics import evaluate  # noqa: E402

NOTE_SENTENCES = 8


def probe_runtimes() -> dict[str, str]:
    """What accelerated runtimes this machine offers (the GPU Triton repository needs TensorRT)."""
    found = {"tensorrt (python)": "yes" if importlib.util.find_spec("tensorrt") else "no",
             "trtexec": shutil.which("trtexec") or "no"}
    try:
        import onnxruntime

        found["onnxruntime providers"] = ", ".join(onnxruntime.get_available_providers())
    except ImportError:
        found["onnxruntime providers"] = "not installed"
    libs = subprocess.run(["bash", "-c", "ldconfig -p | grep -c libnvinfer"], capture_output=True, text=True)
    found["libnvinfer in ldconfig"] = libs.stdout.strip() or "0"
    return found


def timed(function, *args):  # noqa: ANN001, ANN201
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def end_to_end(encode, tokenizer, texts: list[str], micro_batch: int) -> tuple[float, float, float]:  # noqa: ANN001
    """Seconds spent tokenizing, encoding and decoding ``texts`` (the ``ner`` model's hot path)."""
    batch, t_tok = timed(tokenize_notes, tokenizer, texts)
    logits, t_enc = timed(encode_sorted, batch.input_ids, batch.attention_mask, encode, micro_batch)
    _, t_dec = timed(lambda: [note.entities for note in decode_notes(
        texts, batch.notes, [note_rows(logits, lay) for lay in batch.notes])])
    return t_tok, t_enc, t_dec


def _worker(model: Path, texts: list[str], micro_batch: int, barrier, queue) -> None:  # noqa: ANN001
    """One serving process sharing the GPU (as Triton instances of the CPU stages would)."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(model)
    encode = torch_encoder(AutoModelForTokenClassification.from_pretrained(model, dtype=torch.float16)
                           .eval().to("cuda"))
    end_to_end(encode, tokenizer, texts, micro_batch)  # warm-up
    barrier.wait()
    start = time.perf_counter()
    for _ in range(3):
        end_to_end(encode, tokenizer, texts, micro_batch)
    queue.put(time.perf_counter() - start)


def process_scaling(model: Path, texts: list[str], micro_batch: int, counts: list[int]) -> dict[int, float]:
    """Aggregate notes/s of ``count`` concurrent processes, each tagging ``texts`` 3 times on one GPU."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    rates = {}
    for count in counts:
        barrier, queue = context.Barrier(count), context.Queue()
        workers = [context.Process(target=_worker, args=(model, texts, micro_batch, barrier, queue))
                   for _ in range(count)]
        for w in workers:
            w.start()
        seconds = [queue.get(timeout=600) for _ in workers]
        for w in workers:
            w.join()
        rates[count] = count * 3 * len(texts) / max(seconds)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--micro-batch", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--out", type=Path, help="FILE.md: the report there, the measurements in FILE.json")
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu to try the script out")
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 4, 8],
                        help="process counts for the scaling table (none: skip)")
    parser.add_argument("--limit", type=int, default=0, help="first N test sentences only (0: all)")
    parser.add_argument("--from-json", type=Path, help="re-render the report from a saved FILE.json (no run)")
    args = parser.parse_args()
    if args.from_json:
        text = render(json.loads(args.from_json.read_text()))
        print(text)
        if args.out:
            args.out.write_text(text)
        return
    if not (args.model and args.data):
        parser.error("--model and --data are required (or --from-json)")

    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from benchmarks.common import hardware_info

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device (try --device cpu)")
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "CPU"
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    base = AutoModelForTokenClassification.from_pretrained(args.model, dtype=torch.float32).eval()
    encoders = {"fp32": torch_encoder(base.to(args.device)),
                "fp16": torch_encoder(AutoModelForTokenClassification.from_pretrained(
                    args.model, dtype=torch.float16).eval().to(args.device))}

    test = read_behealthy_pair(args.data / "test_sent", args.data / "test_label")[: args.limit or None]
    sentences = [" ".join(s.tokens) for s in test]
    notes = [" ".join(sentences[i: i + NOTE_SENTENCES]) for i in range(0, len(sentences), NOTE_SENTENCES)]
    windows = tokenize_notes(tokenizer, sentences)
    saved: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "command": " ".join(["python", "benchmarks/gpu_check.py", *sys.argv[1:]]),
                   "machine": hardware_info(), "device": device, "torch": torch.__version__,
                   "cuda": torch.version.cuda, "sentences": len(sentences), "notes": len(notes),
                   "note_sentences": NOTE_SENTENCES, "rounds": args.rounds, "runtimes": probe_runtimes()}

    # warm-up (CUDA context, kernels for each shape bucket)
    for encode in encoders.values():
        encode_sorted(windows.input_ids, windows.attention_mask, encode, 64)

    results: dict[str, list[float]] = {}
    stages: dict[str, list[tuple[float, float, float]]] = {}
    for _ in range(args.rounds):
        for precision, encode in encoders.items():
            for micro in args.micro_batch:
                _, seconds = timed(encode_sorted, windows.input_ids, windows.attention_mask, encode, micro)
                results.setdefault(f"encoder only, {precision}, micro-batch {micro} (windows/s)", []).append(
                    len(windows.input_ids) / seconds)
                for name, texts in (("sentences", sentences), ("8-sentence notes", notes)):
                    spent = end_to_end(encode, tokenizer, texts, micro)
                    key = f"end to end, {name}, {precision}, micro-batch {micro} (notes/s)"
                    results.setdefault(key, []).append(len(texts) / sum(spent))
                    stages.setdefault(key, []).append(spent)
    saved["results"], saved["stages"] = results, stages

    gold = [list(s.labels) for s in test]
    saved["f1"] = {p: evaluate(gold, predict_sentences([list(s.tokens) for s in test], tokenizer, e))["entity_f1"]
                   for p, e in encoders.items()}
    saved["processes"] = None
    if args.processes and args.device == "cuda":
        rates = process_scaling(args.model, sentences, max(args.micro_batch), args.processes)
        saved["processes"] = {str(n): r for n, r in rates.items()}
    text = render(saved)
    print(text)
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps(saved, indent=1) + "\n")
        args.out.write_text(text)


def render(saved: dict) -> str:
    """The markdown report of a run (a fresh one, or one saved with ``--out``)."""
    from benchmarks.common import hardware

    machine = saved["machine"]
    lines = [f"# GPU check: {saved['device']} ({saved['date']})", "",
             f"`{saved['command']}` on {hardware(machine)} (detected): {saved['device']}, torch {saved['torch']}, "
             f"CUDA {saved['cuda']}; {saved['sentences']} test sentences, {saved['notes']} notes of "
             f"{saved['note_sentences']} sentences; median of {saved['rounds']} interleaved rounds.", ""]
    lines += ["| runtime | available |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in saved["runtimes"].items()] + [""]
    lines += ["| variant | median | min | max | tokenize / encode / decode share |",
              "| --- | ---: | ---: | ---: | --- |"]
    for key, values in saved["results"].items():
        share = ""
        if key in saved["stages"]:
            total = np.array(saved["stages"][key]).sum(axis=0)
            share = " / ".join(f"{100 * t / total.sum():.0f}%" for t in total)
        median, low, high = statistics.median(values), min(values), max(values)
        lines.append(f"| {key} | {median:,.0f} | {low:,.0f} | {high:,.0f} | {share} |")
    f1 = saved["f1"]
    lines += ["", f"Test entity F1 (serving decode): fp32 {f1['fp32']:.4f}, fp16 {f1['fp16']:.4f} "
              f"(difference {100 * (f1['fp16'] - f1['fp32']):+.2f} points)."]
    if saved["processes"]:
        rates = saved["processes"]
        base = next(iter(rates))
        first = rates[base]
        lines += ["", f"Processes sharing the GPU (fp16, sentences; each process tokenizes and decodes with one torch "
                  f"thread, as a Triton instance of the CPU stages would; {machine['cores']} cores):", "",
                  f"| processes | notes/s | vs {base} process{'' if base == '1' else 'es'} |", "| ---: | ---: | ---: |"]
        lines += [f"| {n} | {r:,.0f} | {r / first:.2f}x |" for n, r in rates.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
