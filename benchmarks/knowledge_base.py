"""The disease -> treatment knowledge base against the gold annotations of BeHealthy's test split.

    python benchmarks/knowledge_base.py [--repository model_repository] [--model ner_int8]

Each test sentence becomes a note (a JSONL line); the champion of ``--repository`` tags them in-process into a fresh
records store (records.extract, as ExtractFlow's workers do) and the KB is built from the records (records.kb).
The gold pairs are the annotated D and T of one sentence, names normalised the same way (records.kb.normalise_name).

- mention pairs: (sentence, disease, treatment) from the KB's evidence against the gold ones: precision, recall, F1;
- KB pairs: the distinct (disease, treatment) names, the same way;
- answers: for each gold disease, ``records.kb.query`` (the same query as `medner kb query`, MeSH ids included)
  asked "what treats it?": does a gold treatment of that disease appear in the top 1 / top 3 answers?

Writes benchmarks/results/knowledge_base.{md,json}, with the real output of
`medner kb query "hereditary retinoblastoma"` on the store it built.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import hardware, hardware_info, write_results  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "knowledge_base"
EXAMPLE = "hereditary retinoblastoma"


def gold_pairs(sentences: list) -> set[tuple[int, str, str]]:
    """(sentence index, disease, treatment) for every annotated D and T of one sentence, names normalised."""
    from medner.spans import labels_to_spans
    from records.kb import normalise_name

    pairs = set()
    for index, sentence in enumerate(sentences):
        names = defaultdict(list)
        for span in labels_to_spans(sentence.labels):
            if span.label != "O":
                names[span.label].append(normalise_name(" ".join(sentence.tokens[span.start:span.end])))
        pairs |= {(index, d, t) for d in names["D"] for t in names["T"] if d and t}
    return pairs


def model_pairs(store) -> set[tuple[int, str, str]]:
    """The same triples from the KB's evidence (note ids are ``test-INDEX``)."""
    from sqlalchemy import select

    from records.store import KbEvidence, KbPair, RecordNote

    with store.session() as session:
        rows = session.execute(select(RecordNote.note_id, KbPair.disease, KbPair.treatment)
                               .join(KbEvidence, KbEvidence.pair == KbPair.id)
                               .join(RecordNote, RecordNote.id == KbEvidence.note)).all()
    return {(int(note_id.removeprefix("test-")), d, t) for note_id, d, t in rows}


def prf(predicted: set, gold: set) -> dict[str, float]:
    hits = len(predicted & gold)
    precision, recall = hits / max(len(predicted), 1), hits / max(len(gold), 1)
    return {"predicted": len(predicted), "gold": len(gold), "correct": hits, "precision": precision,
            "recall": recall, "f1": 2 * precision * recall / (precision + recall) if hits else 0.0}


def answer_accuracy(store, gold: set[tuple[int, str, str]]) -> dict[str, float]:
    """For each gold disease: is one of its gold treatments the KB's first answer, or among its first three?"""
    from records.kb import query

    treatments = defaultdict(set)
    for _, disease, treatment in gold:
        treatments[disease].add(treatment)
    top1 = top3 = answered = 0
    for disease, right in treatments.items():
        answers = [a.treatment for a in query(store, disease, top=3)]
        answered += bool(answers)
        top1 += bool(answers[:1]) and answers[0] in right
        top3 += any(a in right for a in answers)
    n = len(treatments)
    return {"questions": n, "answered": answered, "top1": top1 / n, "top3": top3 / n}


def run(repository: Path, model: str, data_dir: str | None) -> None:
    from medner.config import data_dir as resolve
    from medner.data import read_behealthy
    from medner.registry import lineage
    from medner.spans import join_tokens
    from records import kb
    from records.extract import champion_model, extract_shard, local_extractor
    from records.sources import list_notes
    from records.store import RecordsStore

    test = read_behealthy(resolve(data_dir))["test"]
    model, version = champion_model(repository, model)
    with tempfile.TemporaryDirectory() as work:
        notes = Path(work) / "test.jsonl"
        notes.write_text("".join(json.dumps({"id": f"test-{i}", "text": join_tokens(s.tokens)[0]}) + "\n"
                                 for i, s in enumerate(test)))
        url = f"sqlite:///{Path(work) / 'records.db'}"
        store = RecordsStore(url)
        stats = extract_shard(list_notes(str(notes)), store=store, run="benchmarks/knowledge_base",
                              extractor=local_extractor(repository, model, version))
        built = kb.build(store)
        gold = gold_pairs(test)
        result = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"), "hardware": hardware_info(), "model": model,
            "version": version, "source": lineage(repository, version).get("source"), "notes": stats.notes,
            "entities": stats.entities, "kb": built, "mention_pairs": prf(model_pairs(store), gold),
            "kb_pairs": prf({(d, t) for _, d, t in model_pairs(store)}, {(d, t) for _, d, t in gold}),
            "answers": answer_accuracy(store, gold),
            "example": subprocess.run([sys.executable, "-m", "medner.cli", "kb", "query", EXAMPLE, "--db", url],
                                      capture_output=True, text=True, cwd=ROOT).stdout,
        }
        store.close()
    write_results(OUT, report(result), result)


def report(r: dict) -> list[str]:
    def row(name: str, m: dict) -> str:
        return (f"| {name} | {m['gold']} | {m['predicted']} | {m['correct']} | {m['precision']:.3f} | "
                f"{m['recall']:.3f} | {m['f1']:.3f} |")

    a = r["answers"]
    return [
        f"# The disease -> treatment knowledge base against the gold pairs ({r['date']})", "",
        "`python benchmarks/knowledge_base.py` (this file is its output). Machine: " + hardware(r["hardware"]) + ".",
        "", f"BeHealthy's {r['notes']} test sentences, one note each, tagged in-process by `{r['model']}` version "
        f"{r['version']} (trained by {r['source']}) into a records store; the KB built from the records: "
        f"{r['kb']['pairs']} pairs from {r['kb']['mentions']} mentions. Gold: the annotated D and T of one sentence, "
        "names normalised alike.", "",
        "| pairs | gold | predicted | correct | precision | recall | F1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        row("mentions (sentence, disease, treatment)", r["mention_pairs"]),
        row("KB pairs (distinct disease, treatment)", r["kb_pairs"]), "",
        f"Questions \"what treats X?\" for each of the {a['questions']} gold diseases (records.kb.query: the name, "
        f"normalised, or its MeSH id): answered {a['answered']}; a gold treatment first: **{a['top1']:.3f}**; among "
        f"the first three: **{a['top3']:.3f}**.", "",
        f"`medner kb query \"{EXAMPLE}\"` on that store:", "", "```console", r["example"].rstrip(), "```",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--model", default="", help="served model (default: INT8 where its gate passed)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    run(args.repository, args.model, args.data_dir)


if __name__ == "__main__":
    main()
