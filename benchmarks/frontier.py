"""The accuracy/cost frontier: each model family beside the others, on one machine, in one run.

    python benchmarks/frontier.py run --model minilm=TrainFlow/ID --model mpnet=TrainFlow/ID \
        --model student=TrainFlow/ID [--model FAMILY=RUN|RUN,RUN,...|FOLDER ...] [--rounds 3]
    python benchmarks/frontier.py report [--out benchmarks/results/frontier]

``run`` takes one trained model per family (a TrainFlow run or a model folder), exports it to ONNX as `medner
export` does, quantizes it (dynamic INT8, per-channel) by every recipe export tries (``INT8_RECIPES``: the MatMul
weights, then with more and more of the sensitive ones kept fp32) and over every op ONNX Runtime can quantize, the
embedding lookup included, scores every variant's test
entity F1 through the serving path (the run's own decoder and span edges) and times it in-process: every test
sentence as a note through tokenize -> ONNX Runtime -> decode, ``--threads`` threads, variants interleaved round
after round, the median of ``--rounds``. ``report`` joins those figures with the families' accuracy over seeds and
their seed ensembles from benchmarks/results/accuracy.json (the ablation); an ensemble's notes/s is its single
model's divided by its seeds (one encoder pass per seed: computed, not timed). Cost per million notes prices the
measured rate as the CPU instance of benchmarks/serving.py with this machine's core count.

Writes benchmarks/results/frontier.{md,json} (``--out``: another path, for another set of families).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import hardware, hardware_info, load_notes, out_option, write_results  # noqa: E402
from export.onnx_export import INT8_RECIPES  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "frontier"
#: family -> (its ablation candidate in benchmarks/results/accuracy.json, the decoding its runs are served with)
FAMILIES = {
    "minilm": ("5ep-lr2e-4-ld0.8", "span edges"),  # TrainConfig's defaults: what TrainFlow trains
    "mpnet": ("mpnet-lr1e-4-bf16", "plain"),  # span edges cost MPNet accuracy (accuracy.md)
    "student": ("distill-w0.5-t2-c1", "span edges"),  # TrainConfig's distillation defaults
    "student-of-ensemble": ("distill-ens-w0.5-t2-c1", "span edges"),  # the same, taught by MPNet's seed ensemble
    # MPNet's seed ensemble served as one model (--model mpnet-ensemble=RUN,RUN,RUN: one graph, every member inside)
    "mpnet-ensemble": ("", "plain"),
    "mpnet-self-distilled": ("mpnet-self-distill-ens", "plain"),  # MPNet taught by its seed ensemble
    # trained with a CRF layer: decoded with its learned transition scores (in the model's span_edges.json)
    "minilm-crf": ("crf-layer", "learned transitions"),
    "mpnet-crf": ("mpnet-lr1e-4-bf16-crf", "learned transitions"),
    "mpnet-crf-ensemble": ("", "learned transitions"),  # its seed ensemble as one model (their mean transitions)
    "crf-student-of-ensemble": ("crf-distill-ens-w0.5-t1-c1", "learned transitions"),
}
# int8-all-ops: every op ONNX Runtime can quantize, the embedding lookup included; then export's own recipes, in the
# order it tries them (export.onnx_export.INT8_RECIPES)
VARIANTS = ("fp32", "int8-all-ops", *(recipe.name for recipe in INT8_RECIPES))


def quantized_variants(onnx_path: Path, folder: Path) -> list[tuple[str, Path]]:
    """Each variant of :data:`VARIANTS` this graph has, and its ONNX file (written into ``folder``); a recipe that
    keeps no other nodes fp32 than one before it is the same model and left out."""
    from export.onnx_export import quantize_int8, recipe_nodes

    variants = [("fp32", onnx_path), ("int8-all-ops", quantize_int8(onnx_path, folder / "int8-all-ops.onnx", None))]
    return variants + [(recipe.name, quantize_int8(onnx_path, folder / f"{recipe.name}.onnx", keep_fp32=kept))
                       for recipe, kept in recipe_nodes(onnx_path)]


def run(models: dict[str, str], rounds: int, threads: int, data_dir: str | None, out: Path = OUT) -> None:
    from export.onnx_export import export_onnx
    from medner.config import data_dir as resolve_data_dir
    from medner.data import read_behealthy
    from medner.decoding import SpanEdges
    from medner.inference import WordPieceTokenizer, extract, ort_encoder, predict_sentences
    from medner.metrics import evaluate
    from medner.steps import model_folder

    test = read_behealthy(resolve_data_dir(data_dir))["test"]
    notes = load_notes(data_dir)
    variants: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for family, source in models.items():
            folder = model_folder(source)  # a run's model, written once into the cache, or a folder as it is
            decoding = FAMILIES[family][1]
            edges = SpanEdges.load(folder) if decoding != "plain" else None
            tokenizer = WordPieceTokenizer.from_dir(folder)
            onnx = export_onnx(folder, Path(tmp) / f"{family}.onnx")
            (Path(tmp) / family).mkdir()
            for variant, path in quantized_variants(onnx, Path(tmp) / family):
                encoder = ort_encoder(path, threads)
                predicted = predict_sentences([s.tokens for s in test], tokenizer, encoder, edges=edges)
                metrics = evaluate([s.labels for s in test], predicted)
                variants[f"{family}/{variant}"] = {
                    "family": family, "variant": variant, "source": source, "decoding": decoding,
                    "onnx_mb": path.stat().st_size / 2**20, "test": metrics, "seconds": [],
                    "extract": lambda n, t=tokenizer, e=encoder, d=edges: extract(n, t, e, edges=d)}
                print(f"{family}/{variant}: test entity F1 {metrics['entity_f1']:.4f}", flush=True)
        for name in variants:  # warm-up: the first call of a session pays for its allocations
            variants[name]["extract"](notes[:64])
        for round_ in range(rounds):
            for name, variant in variants.items():
                started = time.perf_counter()
                variant["extract"](notes)
                variant["seconds"].append(time.perf_counter() - started)
                print(f"round {round_ + 1}: {name} {len(notes) / variant['seconds'][-1]:.0f} notes/s", flush=True)
    for variant in variants.values():
        del variant["extract"]
        variant["notes_per_s"] = len(notes) / statistics.median(variant["seconds"])
    saved = {"date": time.strftime("%Y-%m-%d"), "hardware": hardware_info(), "threads": threads, "rounds": rounds,
             "notes": len(notes), "variants": variants}
    out.with_suffix(".json").write_text(json.dumps(saved, indent=1))
    report(out)


def _seeds_row(candidate: dict, decoding: str) -> tuple[list[float], list[float], list[float]]:
    key = "test_entity_f1_edges" if decoding == "span edges" else "test_entity_f1"
    return candidate[key], candidate["test_entity_f1_D"], candidate["test_entity_f1_T"]


def report(out: Path = OUT) -> None:
    from benchmarks.serving import PRICE_SOURCE, PRICES
    from export.gates import INT8_MAX_F1_DROP
    from medner.report import mean_sd

    saved = json.loads(out.with_suffix(".json").read_text())
    accuracy = json.loads((RESULTS / "accuracy.json").read_text())
    candidates = {c["name"]: c for c in accuracy["candidates"]}
    ensembles = {e["name"]: e for e in reversed(accuracy["ensembles"])}  # each family's first: seeds 13-15
    cores = saved["hardware"]["cores"]
    instance = next(((name, price) for name, (price, vcpus, gpu) in PRICES.items() if gpu is None and vcpus == cores),
                    None)
    variants = saved["variants"]
    baseline = variants["minilm/fp32"]["notes_per_s"] if "minilm/fp32" in variants else None

    def cost(rate: float) -> str:
        return f"{instance[1] / (rate * 3600) * 1e6:.3f}" if instance else "–"

    def ratio(rate: float) -> str:
        return f"{rate / baseline:.2f}x" if baseline else "–"

    rows, table = [], []
    for family, (candidate_name, decoding) in FAMILIES.items():
        candidate = candidates.get(candidate_name) if candidate_name else None
        for variant in VARIANTS:
            measured = variants.get(f"{family}/{variant}")
            if measured is None:
                continue
            rate = measured["notes_per_s"]
            seeds = (mean_sd(_seeds_row(candidate, decoding)[0]) + f" ({len(candidate['seeds'])})"
                     if candidate and variant == "fp32" else "–")
            test = measured["test"]
            rows.append({"model": f"{family} {variant}", "seeds_f1": seeds, **measured})
            drop = variants[f"{family}/fp32"]["test"]["entity_f1"] - test["entity_f1"]
            gate = "–" if variant == "fp32" else f"{'pass' if drop <= INT8_MAX_F1_DROP else 'FAIL'} ({-drop:+.4f})"
            table.append(f"| {family} {variant} | {seeds} | {test['entity_f1']:.4f} | {test['entity_f1_D']:.3f} / "
                         f"{test['entity_f1_T']:.3f} | {gate} | {rate:.0f} | {ratio(rate)} | {cost(rate)} |")
        ensemble = ensembles.get(candidate_name) if candidate_name else None
        single = variants.get(f"{family}/fp32")
        if ensemble and single:
            test = ensemble["span_edges"]["test"] if decoding == "span edges" else ensemble["test"]
            rate = single["notes_per_s"] / len(ensemble["seeds"])
            table.append(f"| {family} fp32, {len(ensemble['seeds'])}-seed ensemble | – | {test['entity_f1']:.4f} | "
                         f"{test['entity_f1_D']:.3f} / {test['entity_f1_T']:.3f} | – | {rate:.0f} (computed) | "
                         f"{ratio(rate)} | {cost(rate)} |")
    measured = {f: FAMILIES[f] for f in dict.fromkeys(v["family"] for v in variants.values())}
    out_flag = out_option(out, OUT)
    sources = "; ".join(f"{family}: {source}" for family, source in
                        {v["family"]: v["source"] for v in variants.values()}.items())
    lines = [
        f"# The accuracy/cost frontier ({saved['date']})", "",
        f"Hardware: {hardware(saved['hardware'])}. In-process serving path (tokenize -> ONNX Runtime, "
        f"{saved['threads']} threads -> decode), {saved['notes']} BeHealthy test sentences as notes, median of "
        f"{saved['rounds']} interleaved rounds. Models: {sources}.", "",
        "| model | test F1 over seeds (ablation, fp32 PyTorch) | test F1, this model | D / T | INT8 gate (vs fp32) | "
        "notes/s | vs minilm fp32 | $ per million notes |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |", *table, "",
        f"INT8 gate: export publishes an INT8 model within {INT8_MAX_F1_DROP:.2f} entity F1 of its fp32 one "
        "(`export.gates.int8_gate`), trying " + ", ".join(f"`{r.name}`" for r in INT8_RECIPES) + " in turn "
        "(`export.onnx_export.INT8_RECIPES`: the MatMul weights, then with the first layer's feed-forward output "
        "kept fp32, every layer's, then the whole feed-forward block) and publishing the first that passes.",
        "",
        "Test F1 over seeds: mean ± sd over the ablation's runs of the family's candidate "
        f"({', '.join(f'{f}: `{c}`' for f, (c, _) in measured.items() if c)}; benchmarks/results/accuracy.md), "
        "decoded as "
        "the family is served (" + ", ".join(f"{f}: {d}" for f, (_, d) in measured.items()) + "). The other "
        "columns are this run's: the one model named above per family, exported to ONNX and quantized here. "
        "Ensembles: the mean probabilities of the ablation's seeds (accuracy.md); their rate is the single model's "
        "divided by the number of seeds, computed.", "",
        (f"Cost: the measured notes/s priced as a {instance[0]} ({cores} vCPU) at ${instance[1]:.4f}/hour "
         f"({PRICE_SOURCE}; constants in benchmarks/serving.py)." if instance else
         f"No cost column: no priced CPU instance has this machine's {cores} cores."), "",
        "Command: `python benchmarks/frontier.py run "
        + " ".join(f"--model {v['family']}={v['source']}" for v in variants.values() if v["variant"] == "fp32")
        + out_flag + " && python benchmarks/frontier.py report" + out_flag + "`.",
    ]
    write_results(out, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("run", help="export, quantize, score and time each model")
    start.add_argument("--model", action="append", default=[], metavar="FAMILY=RUN_OR_FOLDER",
                       help=f"one per family ({', '.join(FAMILIES)})")
    start.add_argument("--rounds", type=int, default=3)
    start.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    start.add_argument("--data-dir", default=None)
    again = sub.add_parser("report", help="rewrite frontier.md from frontier.json and accuracy.json")
    for command in (start, again):
        command.add_argument("--out", type=Path, default=OUT,
                             help="results path without suffix (default: benchmarks/results/frontier)")
    args = parser.parse_args()
    out = args.out.resolve().with_suffix("")
    if args.command == "report":
        report(out)
        return
    models = dict(item.split("=", 1) for item in args.model)
    if unknown := sorted(set(models) - set(FAMILIES)):
        parser.error(f"unknown famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}: "
                     f"expected {', '.join(FAMILIES)}")
    run(models, args.rounds, args.threads, args.data_dir, out)


if __name__ == "__main__":
    main()
