"""The acceptance notes (``medner/acceptance.jsonl``, what promotion's UAT gate reads) scored by a model version
in-process, fp32 (``ner``, what the gate scores) and INT8 (``ner_int8``): the figures the gate's threshold
(``medner.config.DEFAULT_UAT_MIN_F1``) is read against.

    python benchmarks/acceptance.py [--repository model_repository] [--version N]   # default: the champion

Writes benchmarks/results/acceptance.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--version", type=int, default=None, help="default: the champion")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from medner.config import ACCEPTANCE_FILE, DEFAULT_UAT_MIN_F1
    from medner.data import read_jsonl
    from medner.promotion import acceptance_scores
    from medner.registry import champion, lineage

    version = args.version if args.version is not None else champion(args.repository)
    if version is None:
        raise SystemExit(f"{args.repository}: no model versions (run `medner export`)")
    record = lineage(args.repository, version)
    notes = read_jsonl(ACCEPTANCE_FILE)
    rows = []
    for model in ("ner", "ner_int8"):
        scores = acceptance_scores(args.repository, version, notes, model)
        test = (record.get("metrics_fp32" if model == "ner" else "metrics_int8") or {}).get("entity_f1")
        rows.append({"model": model, "version": version, "test_entity_f1": test, **scores})
    result = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "repository": str(args.repository),
              "source": record.get("source"), "acceptance_file": ACCEPTANCE_FILE.name,
              "threshold": DEFAULT_UAT_MIN_F1, "rows": rows}
    (RESULTS / "acceptance.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# The acceptance notes, scored",
        "",
        f"{result['date']}; version {version} of `{args.repository}` (source run `{result['source']}`), in-process, "
        f"on the {len(notes)} notes of `medner/{ACCEPTANCE_FILE.name}`. Promotion's UAT gate scores `ner` against "
        f"the threshold `DEFAULT_UAT_MIN_F1` = {DEFAULT_UAT_MIN_F1}.",
        "",
        "| model | test entity F1 | acceptance entity F1 | precision | recall | notes exactly right |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {r['model']} | {'—' if r['test_entity_f1'] is None else format(r['test_entity_f1'], '.4f')} "
          f"| {r['entity_f1']:.4f} | {r['entity_precision']:.4f} | {r['entity_recall']:.4f} "
          f"| {r['exactly_right']} of {r['notes']} |" for r in rows),
        "",
        "Command: `python benchmarks/acceptance.py`.",
    ]
    (RESULTS / "acceptance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
