"""The disease -> treatment knowledge base of a records store: every disease (D) and treatment (T) named in one
sentence of a note is a pair; pairs are keyed by normalised names (:func:`normalise_name`), carry the MeSH or drug
dictionary id where the offline dictionaries know the whole name, and aggregate mentions, notes, confidence and
evidence (note row + offsets: no text beyond the entity rows the store already holds).

``build`` reads each note's newest extraction and rewrites the KB tables in one transaction (run it again after an
ExtractFlow run); ``query`` answers "what treats X?" by name or dictionary id.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from itertools import groupby
from pathlib import Path
from typing import Any

from records.store import KbEvidence, KbPair, RecordEntity, RecordNote, RecordsStore

_TRAILING_ABBREVIATION = re.compile(r"\s*[(\[][^()\[\]]{1,15}[)\]]$")  # "hereditary retinoblastoma (HR)"
_EDGE_PUNCTUATION = " \t\n.,;:'\"-"
DICTIONARY_ID = re.compile(r"^(?:[A-Z]\d{6,9}|DB\d{5}|a\d{6})$")  # MeSH, DrugBank, MedlinePlus ids
EVIDENCE_SHOWN = 5


def normalise_name(text: str) -> str:
    """Lower case, one space between words, no trailing bracketed abbreviation or edge punctuation."""
    name = " ".join(text.split()).strip(_EDGE_PUNCTUATION)
    while (stripped := _TRAILING_ABBREVIATION.sub("", name)) != name and stripped:
        name = stripped.strip(_EDGE_PUNCTUATION)
    return name.lower()


@cache
def dictionary_id(name: str, label: str) -> str | None:
    """The id of the MeSH disease (``label`` D) or drug (T) whose name or synonym is the whole ``name``."""
    words = name.split()
    if not words:
        return None
    if label == "D":
        from medical_named_entity_recognition import find_diseases as find
    else:
        from drug_named_entity_recognition import find_drugs as find
    for info, _, _ in find(words):  # (the two packages count token ends differently: compare the matched string)
        if " ".join(str(info.get("matching_string", "")).lower().split()) == name:
            return info.get("mesh_id") or info.get("drugbank_id") or info.get("medline_plus_id")
    return None


@dataclass
class _Pair:
    mentions: int = 0
    confidence: float = 0.0
    notes: set[int] = field(default_factory=set)
    evidence: list[tuple[int, int, int, int, int]] = field(default_factory=list)


def _sentences(session: Any) -> Iterator[list[RecordEntity]]:
    """The entities of each sentence of each note's newest extraction (the highest row id per note)."""
    from sqlalchemy import func, select

    newest = select(func.max(RecordNote.id)).group_by(RecordNote.source, RecordNote.note_id)
    rows = session.scalars(select(RecordEntity).where(RecordEntity.note.in_(newest))
                           .order_by(RecordEntity.note, RecordEntity.sentence, RecordEntity.start))
    for _, sentence in groupby(rows, key=lambda e: (e.note, e.sentence)):
        yield list(sentence)


def build(store: RecordsStore) -> dict[str, int]:
    """Rewrite the KB tables from the records; returns counts (pairs, mentions, notes)."""
    from sqlalchemy import delete, insert

    pairs: dict[tuple[str, str], _Pair] = defaultdict(_Pair)
    with store.session() as session:
        for entities in _sentences(session):
            diseases = [e for e in entities if e.label == "D" and normalise_name(e.text)]
            treatments = [e for e in entities if e.label == "T" and normalise_name(e.text)]
            for d in diseases:
                for t in treatments:
                    pair = pairs[normalise_name(d.text), normalise_name(t.text)]
                    pair.mentions += 1
                    pair.confidence += min(d.score, t.score)
                    pair.notes.add(d.note)
                    pair.evidence.append((d.note, d.start, d.end, t.start, t.end))
        session.execute(delete(KbEvidence))
        session.execute(delete(KbPair))
        for (disease, treatment), pair in sorted(pairs.items()):
            row = KbPair(disease=disease, disease_id=dictionary_id(disease, "D"), treatment=treatment,
                         treatment_id=dictionary_id(treatment, "T"), mentions=pair.mentions, notes=len(pair.notes),
                         mean_confidence=pair.confidence / pair.mentions)
            session.add(row)
            session.flush()
            session.execute(insert(KbEvidence), [
                {"pair": row.id, "note": note, "disease_start": ds, "disease_end": de, "treatment_start": ts,
                 "treatment_end": te} for note, ds, de, ts, te in pair.evidence])
    return {"pairs": len(pairs), "mentions": sum(p.mentions for p in pairs.values()),
            "notes": len(set().union(*(p.notes for p in pairs.values())))}


@dataclass
class Answer:
    """One treatment for the asked disease, over every KB pair that matched it."""

    treatment: str
    treatment_id: str | None
    mentions: int
    notes: int
    mean_confidence: float
    diseases: list[str]  # the KB's disease names that matched the question
    evidence: list[dict[str, Any]]  # up to EVIDENCE_SHOWN: source, note_id, offsets

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "mean_confidence": round(self.mean_confidence, 4)}


def query(store: RecordsStore, disease: str, top: int = 10) -> list[Answer]:
    """Treatments of ``disease`` (a name, matched normalised, or a dictionary id; a name the MeSH dictionary knows
    matches every KB name with its id), most notes first."""
    from sqlalchemy import or_, select

    asked = disease.strip()
    key = asked if DICTIONARY_ID.match(asked) else dictionary_id(normalise_name(asked), "D")
    matches = KbPair.disease == normalise_name(asked)
    with store.session() as session:
        rows = session.scalars(select(KbPair).where(or_(matches, KbPair.disease_id == key) if key else matches)
                               ).all()
        grouped: dict[str, list[KbPair]] = defaultdict(list)
        for row in rows:
            grouped[row.treatment].append(row)
        answers = [_answer(session, treatment, pairs) for treatment, pairs in grouped.items()]
    answers.sort(key=lambda a: (-a.notes, -a.mentions, -a.mean_confidence, a.treatment))
    return answers[:top]


def _answer(session: Any, treatment: str, pairs: list[KbPair]) -> Answer:
    from sqlalchemy import select

    mentions = sum(p.mentions for p in pairs)
    evidence = session.execute(
        select(RecordNote.source, RecordNote.note_id, KbEvidence.disease_start, KbEvidence.disease_end,
               KbEvidence.treatment_start, KbEvidence.treatment_end)
        .join(RecordNote, RecordNote.id == KbEvidence.note)
        .where(KbEvidence.pair.in_([p.id for p in pairs])).order_by(KbEvidence.id).limit(EVIDENCE_SHOWN)).all()
    return Answer(treatment, pairs[0].treatment_id, mentions, sum(p.notes for p in pairs),
                  sum(p.mean_confidence * p.mentions for p in pairs) / mentions, sorted({p.disease for p in pairs}),
                  [{"source": s, "note_id": n, "disease": [ds, de], "treatment": [ts, te]}
                   for s, n, ds, de, ts, te in evidence])


EXPORT_COLUMNS = ("disease", "disease_id", "treatment", "treatment_id", "mentions", "notes", "mean_confidence")


def export_csv(store: RecordsStore, out: Path) -> int:
    """Every KB pair as a CSV row (most notes first within a disease); returns the row count."""
    from sqlalchemy import select

    with store.session() as session, out.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(EXPORT_COLUMNS)
        count = 0
        for row in session.scalars(select(KbPair).order_by(KbPair.disease, KbPair.notes.desc(), KbPair.treatment)):
            writer.writerow([getattr(row, column) for column in EXPORT_COLUMNS])
            count += 1
    return count
