"""Does the review loop pay off? A simulation on BeHealthy, honest about what it measures.

    python benchmarks/review_loop.py run [--notes 300] [--seeds 13 14 15] [--split-seed 13] [--arms ARM ...]
    python benchmarks/review_loop.py report [--out benchmarks/results/review_loop]
    python benchmarks/review_loop.py splits --work A --work B ... [--out benchmarks/results/review_loop_splits]

1. Split BeHealthy's train split in two halves (``--split-seed``): **half A** is the training data, **half B**
   plays the production notes. The test split is untouched. Another split seed (in its own ``--work``) asks
   whether an arm's gain over random notes holds on other notes and another served model.
2. **half only**: DataFlow on half A, TrainFlow for each seed; the first seed's model is exported to a model
   repository: the "served" model.
3. Half B is imported once per store (`review.importer.import_notes`, in-process on the served model): a store
   that hands out notes **least certain first** (random share 0), one that hands out **uniformly random** notes
   (random share 1), and one with the review app's **default** mix (``DEFAULT_RANDOM_SHARE`` of the notes random,
   the rest least certain first); and, to measure the queue's order against others, one store per
   :data:`QUEUE_ORDERS` entry: least certain first by another measure of a note's uncertainty, computed here from
   the served model's word labels and confidences (and, for ``dense``, the pool's texts) and written over the
   imported order. Import time per note is measured here.
4. A scripted reviewer (the gold labels of half B) reviews ``--notes`` notes of each store **through the web
   app's HTTP API** (`medner review serve`, `/api/next`, `/api/notes/ID`).
5. Each store is exported (`medner review export`) into its own inbox, and the inbox starts DataFlow (half A +
   the reviewed notes) and TrainFlow (first seed); the other seeds train on the same DataFlow run.
6. The report: test entity F1 (mean ± sd over seeds) per arm; the served model's errors found per reviewed note
   in each store; its precision/recall/F1 estimated from the random store's reviews vs its true test F1.

Every flow run, the inboxes' included, is on the @project branch ``test.review_loop``, out of the way of the
user's and production's latest runs. Intermediate state is kept in ``--work`` (default ``.review_loop/``), so an
interrupted run resumes; ``--arms`` runs only some of the arms. Writes benchmarks/results/review_loop.{md,json}
(``--out``: another path), with the arms the work folder holds; ``splits`` sets the arms of several work folders
(one split seed each) side by side: each arm's gain over the random arm per split and on average.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.common import hardware, out_option, write_results  # noqa: E402
from medner.config import DEFAULT_RANDOM_SHARE  # noqa: E402
from medner.inference import DecodedNote  # noqa: E402
from medner.labels import OUTSIDE  # noqa: E402

TAG = "review-loop"
WORK = ROOT / ".review_loop"  # intermediate state, so that an interrupted run resumes
OUT = ROOT / "benchmarks" / "results" / "review_loop"
SPLITS_OUT = ROOT / "benchmarks" / "results" / "review_loop_splits"
SPLIT_SEED = 13
# A branch of its own: on the user's branch the half-data DataFlow runs became what a later plain
# `train_flow.py run` trained on, and on prod (the inbox's default) what production did
BRANCH = "test.review_loop"  # Metaflow's branch names: lowercase letters, digits and underscores


def lowest_word_uncertainty(note: DecodedNote) -> float:
    """1 - the lowest best-tag probability over all the words, tagged or not: the queue's order until
    2026-12-06 (a doubtful entity counts as much as a name the model may have missed)."""
    return float(1.0 - note.confidence.min()) if len(note.confidence) else 0.0


def mean_log_uncertainty(note: DecodedNote) -> float:
    """1 - the geometric mean of the word confidences: least confidence normalised by length (MNLP, Shen et al.,
    "Deep active learning for named entity recognition", 2017)."""
    return float(1.0 - np.exp(np.log(np.clip(note.confidence, 1e-9, 1.0)).mean())) if len(note.confidence) else 0.0


def sequence_uncertainty(note: DecodedNote) -> float:
    """1 - the product of the word confidences: the whole note's least confidence (long notes rank high)."""
    return float(1.0 - np.prod(note.confidence))


def missed_sum(note: DecodedNote) -> float:
    """The D/T probabilities of the words tagged O summed (the expected number of missed words s, as s / (1 + s)):
    a note with several names the model may have missed before one with a single one."""
    missed = sum(1.0 - c for label, c in zip(note.labels, note.confidence.tolist()) if label == OUTSIDE)
    return missed / (1.0 + missed)


def isolated_missed(note: DecodedNote) -> float:
    """The largest D/T probability on a word tagged O between words tagged O: a whole name the model may have
    missed, not an entity's edge (such as the "and" between two diseases)."""
    labels = note.labels
    return max((1.0 - c for i, c in enumerate(note.confidence.tolist())
                if labels[i] == OUTSIDE and (i == 0 or labels[i - 1] == OUTSIDE)
                and (i + 1 == len(labels) or labels[i + 1] == OUTSIDE)), default=0.0)


QueueOrder = Callable[[Sequence[DecodedNote], Sequence[str]], np.ndarray]


def each_note(uncertainty: Callable[[DecodedNote], float]) -> QueueOrder:
    """A note's own measure as an order of a pool."""
    def order(decoded: Sequence[DecodedNote], texts: Sequence[str]) -> np.ndarray:
        return np.array([uncertainty(note) for note in decoded])
    order.__doc__ = uncertainty.__doc__
    return order


def text_similarity(texts: Sequence[str]) -> np.ndarray:
    """The texts' TF-IDF cosine similarities to each other (0 on the diagonal)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectors = TfidfVectorizer(lowercase=True, token_pattern=r"[a-z][a-z]+").fit_transform(texts)
    similarity = (vectors @ vectors.T).toarray()
    np.fill_diagonal(similarity, 0.0)
    return similarity


def dense_scores(decoded: Sequence[DecodedNote], similarity: np.ndarray) -> np.ndarray:
    """Each note's own measure times its mean similarity to the pool (over the pool's largest)."""
    density = similarity.mean(axis=1)
    return np.array([note.uncertainty for note in decoded]) * density / density.max()


def dense_missed(decoded: Sequence[DecodedNote], texts: Sequence[str]) -> np.ndarray:
    """The queue's own measure times the note's TF-IDF similarity to the pool (over the pool's largest): a likely
    miss in a typical note first, in an outlier later (information density, Settles and Craven, "An analysis of
    active learning strategies for sequence labeling tasks", 2008)."""
    return dense_scores(decoded, text_similarity(texts))


def novel_dense_missed(decoded: Sequence[DecodedNote], texts: Sequence[str]) -> np.ndarray:
    """The dense order picked greedily, each note's score times 1 - its largest similarity to the notes picked
    before it: a likely miss in a typical note unlike those already queued (a batch of different lessons)."""
    similarity = text_similarity(texts)
    score = dense_scores(decoded, similarity)
    nearest = np.zeros(len(texts))  # each note's largest similarity to the notes picked so far
    picked = np.zeros(len(texts), dtype=bool)
    rank = np.zeros(len(texts))
    for position in range(len(texts)):
        pick = int(np.argmax(np.where(picked, -np.inf, score * (1.0 - nearest))))
        picked[pick] = True
        rank[pick] = 1.0 - position / len(texts)
        nearest = np.maximum(nearest, similarity[pick])
    return rank


# Other least-certain-first orders, beside the queue's own (DecodedNote.uncertainty: the largest D/T probability
# on a word tagged O): each maps the pool's decodings and texts to the notes' uncertainties
QUEUE_ORDERS: dict[str, QueueOrder] = {
    "lowest": each_note(lowest_word_uncertainty), "mnlp": each_note(mean_log_uncertainty),
    "sequence": each_note(sequence_uncertainty), "msum": each_note(missed_sum),
    "isolated": each_note(isolated_missed), "dense": dense_missed, "novel": novel_dense_missed}
# the stores' random share: all random, all least certain first, the review app's default mix, and the other orders
STORES = {"half+random": 1.0, "half+queue": 0.0, "half+default": DEFAULT_RANDOM_SHARE,
          **{f"half+queue-{name}": 0.0 for name in QUEUE_ORDERS}}


def arm_entry(state: dict, arm: str) -> dict:
    """An arm's entry in a work folder's state (``half``, or a store's), empty when it has none."""
    return state.get("half", {}) if arm == "half" else state.get(f"store:{arm}", {})


class Work:
    """The work folder and its state file (what is done, and the run ids)."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "state.json"
        self.state = json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self) -> None:
        self.path.write_text(json.dumps(self.state, indent=1))


def flow(name: str, *args: str) -> str:
    """Run a flow here (tagged, on ``BRANCH``) and return its run pathspec."""
    from medner.runs import branch_options, latest_successful_run

    branch = [f"--{k}" if v is True else f"--{k}={v}" for k, v in branch_options(BRANCH).items()]
    command = [sys.executable, str(ROOT / "flows" / f"{name}.py"), *branch, "run", "--tag", TAG, *args]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return latest_successful_run({"data_flow": "DataFlow", "train_flow": "TrainFlow"}[name], BRANCH).pathspec


def split_halves(data_dir: Path, work: Work, seed: int = SPLIT_SEED) -> tuple[Path, list]:
    """Half A written as a BeHealthy folder (with the untouched test split); half B returned as sentences."""
    from medner.data import read_behealthy, write_behealthy

    corpus = read_behealthy(data_dir)
    order = list(range(len(corpus["train"])))
    random.Random(seed).shuffle(order)
    middle = len(order) // 2
    half_a = [corpus["train"][i] for i in sorted(order[:middle])]
    half_b = [corpus["train"][i] for i in sorted(order[middle:])]
    folder = work.folder / "half_a"
    write_behealthy(half_a, folder, "train")
    write_behealthy(corpus["test"], folder, "test")
    return folder, half_b


def gold_notes(sentences: list) -> dict[str, list[dict]]:
    """Each half-B sentence as a note (tokens joined by spaces) with its gold character spans."""
    from medner.spans import join_tokens, token_spans_to_char_spans

    notes = {}
    for sentence in sentences:
        text, offsets = join_tokens(sentence.tokens)
        notes[text] = [{"start": s, "end": e, "label": label}
                       for s, e, label in token_spans_to_char_spans(sentence.spans, offsets)]
    return notes


def medner_cli(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "medner.cli", *args], check=True, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.strip()


def review_through_app(db: str, gold: dict[str, list[dict]], notes: int) -> dict:
    """Start `medner review serve` on the store, add a reviewer, and review ``notes`` notes with the gold
    spans through the JSON API. Returns counts of decisions."""
    token = medner_cli("review", "add-reviewer", "gold", "--db", db)
    server = subprocess.Popen([sys.executable, "-m", "medner.cli", "review", "serve", "--db", db, "--port", "0"],
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = server.stderr.readline()  # "review app on http://127.0.0.1:PORT": the socket listens
        address = line.strip().rsplit(" ", 1)[-1]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        decisions: dict[str, int] = {}
        for _ in range(notes):
            with urllib.request.urlopen(urllib.request.Request(f"{address}/api/next", headers=headers)) as answer:
                if answer.status == 204:
                    break
                note = json.load(answer)
            spans = [{**s, "text": note["text"][s["start"]: s["end"]]} for s in gold[note["text"]]]
            body = json.dumps({"revision": note["revision"], "entities": spans}).encode()
            request = urllib.request.Request(f"{address}/api/notes/{note['id']}", data=body, headers=headers,
                                             method="POST")
            with urllib.request.urlopen(request) as answer:
                decision = json.load(answer)["decision"]
            decisions[decision] = decisions.get(decision, 0) + 1
        return decisions
    finally:
        server.terminate()
        server.wait()


def run(args: argparse.Namespace) -> None:
    from medner.config import data_dir as resolve_data_dir
    from monitoring.inbox import process_inbox
    from review.importer import import_notes
    from review.service import export_reviews, quality_by_version, quality_totals
    from review.store import Store

    work = Work(Path(args.work).resolve())
    state = work.state
    if state.setdefault("split_seed", args.split_seed) != args.split_seed:
        raise SystemExit(f"{work.folder} holds the split of seed {state['split_seed']}: use another --work for "
                         f"split seed {args.split_seed}")
    half_dir, half_b = split_halves(resolve_data_dir(args.data_dir or None), work, args.split_seed)
    gold = gold_notes(half_b)
    repository = work.folder / "model_repository"

    if "half" not in state:
        data_run = flow("data_flow", "--data-dir", str(half_dir))
        runs = [flow("train_flow", "--data-run", data_run, "--seed", str(seed),
                     *(["--repository", str(repository)] if k == 0 else []))
                for k, seed in enumerate(args.seeds)]
        state["half"] = {"data_run": data_run, "train_runs": runs}
        work.save()

    for arm, share in STORES.items():
        if args.arms and arm not in args.arms:
            continue
        key = f"store:{arm}"
        db = f"sqlite:///{work.folder / (arm.replace('+', '_') + '.db')}"
        if key not in state:
            store = Store(db)
            began = time.perf_counter()
            imported = import_notes(list(gold_items(gold)), store, local=repository, random_share=share)
            seconds = time.perf_counter() - began
            store.close()
            state[key] = {"db": db, "imported": imported.imported, "import_seconds": round(seconds, 2),
                          "seconds_per_note": round(seconds / max(1, imported.imported), 5)}
            work.save()
        order = arm.removeprefix("half+queue-")
        if order in QUEUE_ORDERS and "reordered" not in state[key]:
            state[key]["reordered"] = reorder(db, repository, QUEUE_ORDERS[order])
            work.save()
        if "decisions" not in state[key]:
            state[key]["decisions"] = review_through_app(db, gold, args.notes)
            work.save()
        if "train_runs" not in state[key]:
            store = Store(db)
            with store.session() as session:
                state[key]["quality_all"] = quality_totals(quality_by_version(session, sample=None))
                state[key]["quality_random"] = quality_totals(quality_by_version(session))
                inbox = work.folder / f"inbox_{arm.replace('+', '_')}"
                path, exported = export_reviews(session, inbox)
            store.close()
            result = process_inbox(inbox, "local", work.folder / "decisions.jsonl",
                                   data_parameters={"data-dir": str(half_dir)},
                                   train_parameters={"seed": args.seeds[0]}, backend_options={"branch": BRANCH})
            started = {d["flow"]: d["target"] for d in result.decisions if d.get("target")}
            runs = [started["TrainFlow"]] + [flow("train_flow", "--data-run", started["DataFlow"], "--seed", str(s))
                                             for s in args.seeds[1:]]
            state[key].update(exported=exported, data_run=started["DataFlow"], train_runs=runs)
            work.save()
    print(json.dumps(state, indent=1))


def reorder(db: str, repository: Path, uncertainty: QueueOrder) -> int:
    """Rank a store's notes by ``uncertainty`` of the served model's decodings (in-process, as imported) and the
    notes' texts: each note's confidence becomes 1 - it. Returns the number of notes ranked."""
    from sqlalchemy import select

    from clients.local import LocalNerModel
    from review.store import Note, Store

    pipeline = LocalNerModel(repository).pipeline
    store = Store(db)
    with store.session() as session:
        notes = session.scalars(select(Note)).all()
        texts = [note.text for note in notes]
        _, decoded = pipeline.decoded(texts)
        for note, score in zip(notes, uncertainty(decoded, texts), strict=True):
            note.confidence = 1.0 - float(score)
    store.close()
    return len(notes)


def gold_items(gold: dict[str, list[dict]]) -> list[tuple[str, str]]:
    return [(f"half_b:{k}", text) for k, text in enumerate(gold, 1)]


def bootstrap_f1(db: str, rounds: int = 2000, seed: int = 13) -> tuple[float, float]:
    """A 95% interval of the entity F1 estimated from a store's random-share reviews, resampling notes."""
    from review.service import agreement, final_reviews, scores
    from review.store import RANDOM, Store

    store = Store(db)
    with store.session() as session:
        per_note = [agreement(extraction.entities, review.entities)
                    for note, review, extraction in final_reviews(session) if note.sample == RANDOM]
    store.close()
    rng = random.Random(seed)
    values = sorted(scores(*(sum(c[k] for c in sample) for k in range(3)))["entity_f1"]
                    for sample in ([rng.choice(per_note) for _ in per_note] for _ in range(rounds)))
    return values[int(0.025 * rounds)], values[int(0.975 * rounds) - 1]


def order_summary(order: QueueOrder) -> str:
    """An order's docstring up to its colon, on one line and in lower case, for the report's prose."""
    summary = " ".join(order.__doc__.split(":")[0].split())
    return summary[:1].lower() + summary[1:]


def arm_description(arm: str) -> str:
    """How an arm's store orders its notes, for the report's prose."""
    order = arm.removeprefix("half+queue-")
    if order in QUEUE_ORDERS:
        return f"`{arm.removeprefix('half+')}`, least certain first by {order_summary(QUEUE_ORDERS[order])}"
    return {"half+random": "`random` order",
            "half+queue": "`queue`: least certain first by the queue's own measure, the largest D/T probability on "
                          "a word tagged O",
            "half+default": f"`default`, the review app's: {DEFAULT_RANDOM_SHARE:.0%} of the notes random and the "
                            "rest least certain first"}[arm]


def report(args: argparse.Namespace) -> None:
    from metaflow import Run, namespace

    from medner.report import mean_sd

    namespace(None)
    state = Work(Path(args.work).resolve()).state
    done = [arm for arm in STORES if "train_runs" in arm_entry(state, arm)]
    split_seed = state.get("split_seed", SPLIT_SEED)
    options = (out_option(args.work, WORK, "--work")
               + (f" --split-seed {split_seed}" if split_seed != SPLIT_SEED else "")
               + (f" --arms {' '.join(done)}" if len(done) < len(STORES) else ""))
    report_options = out_option(args.work, WORK, "--work") + out_option(args.out, OUT)
    arms = {arm: arm_entry(state, arm) for arm in ("half", *done)}
    rows = {}
    for arm, entry in arms.items():
        metrics = [Run(r).data.metrics for r in entry["train_runs"]]
        extra = Run(entry["data_run"]).data.extra_sentences if arm != "half" else {"total": 0, "train": 0, "dev": 0}
        rows[arm] = {"runs": entry["train_runs"], "data_run": entry["data_run"], "extra_sentences": extra,
                     "f1": [m["entity_f1"] for m in metrics], "f1_D": [m["entity_f1_D"] for m in metrics],
                     "f1_T": [m["entity_f1_T"] for m in metrics],
                     "precision": [m["entity_precision"] for m in metrics],
                     "recall": [m["entity_recall"] for m in metrics]}
    served = Run(state["half"]["train_runs"][0]).data.metrics
    stores = {arm: arm_entry(state, arm) for arm in done}
    summary = {"hardware": hardware(), "split_seed": split_seed, "arms": rows, "stores": stores,
               "served_model": {"run": state["half"]["train_runs"][0], "test_entity_f1": served["entity_f1"],
                                "test_precision": served["entity_precision"], "test_recall": served["entity_recall"]}}
    estimate_lines = []
    if "half+random" in stores:  # the quality estimate reads the random reviews
        estimate = stores["half+random"]["quality_random"]
        low, high = bootstrap_f1(stores["half+random"]["db"])
        summary["estimate_interval_95"] = [low, high]
        estimate_lines = [
            f"Quality estimate from the random reviews ({estimate['notes']} notes): precision "
            f"{estimate['precision']:.3f}, recall {estimate['recall']:.3f}, entity F1 {estimate['entity_f1']:.3f} "
            f"(95% bootstrap interval over notes {low:.3f}–{high:.3f}); the same model's true test entity F1 "
            f"{served['entity_f1']:.3f} (precision {served['entity_precision']:.3f}, recall "
            f"{served['entity_recall']:.3f}).", ""]
    lines = [
        "# The review loop, simulated", "",
        f"BeHealthy's train split halved (split seed {split_seed}): half A trains, half B plays the production notes; "
        "the test split is untouched. The model trained on half A (first seed) tags half B into one review store "
        "per arm (" + "; ".join(arm_description(arm) for arm in done) + "); a scripted reviewer applies half B's "
        "gold labels through the review app's HTTP API to the notes each store hands out; each store's reviews "
        "are exported into an inbox, which starts DataFlow and TrainFlow.", "",
        "| arm | reviewed notes added | of them in train / dev | test entity F1 | D | T | precision | recall | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *(f"| {arm} | {r['extra_sentences']['total']} | {r['extra_sentences']['train']} / "
          f"{r['extra_sentences']['dev']} | {mean_sd(r['f1'])} | {mean_sd(r['f1_D'])} | {mean_sd(r['f1_T'])} | "
          f"{mean_sd(r['precision'])} | {mean_sd(r['recall'])} | "
          + ", ".join(r["runs"]) + " |" for arm, r in rows.items()), "",
        f"Test F1 is the mean ± sd over {len(rows['half']['f1'])} seeds.", "",
        "What the reviewers saw (the served model, first seed of half only, against the gold spans):", "",
        "| store | notes imported | import s/note | reviewed | gold entities in them | accepted as is | "
        "model errors per reviewed note | precision | recall | entity F1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {arm.split('+')[1]} order | {s['imported']} | {s['seconds_per_note']:.4f} | "
          f"{s['quality_all']['notes']} | {s['quality_all']['tp'] + s['quality_all']['fn']} | "
          f"{s['decisions'].get('accepted', 0)} | "
          f"{(s['quality_all']['fp'] + s['quality_all']['fn']) / max(1, s['quality_all']['notes']):.2f} | "
          f"{s['quality_all']['precision']:.3f} | {s['quality_all']['recall']:.3f} | "
          f"{s['quality_all']['entity_f1']:.3f} |" for arm, s in stores.items()), "",
        *estimate_lines,
        f"Import time per note: in-process tagging (ONNX Runtime, the exported fp32 `ner` model) plus the database "
        f"writes (SQLite), on {summary['hardware']}.", "",
        f"Command: `python benchmarks/review_loop.py run{options} && python benchmarks/review_loop.py "
        f"report{report_options}`.",
    ]
    write_results(Path(args.out), lines, summary)


def runs_test_f1(runs: Sequence[str]) -> list[float]:
    """The test entity F1 of TrainFlow runs."""
    from metaflow import Run, namespace

    namespace(None)
    return [Run(run).data.metrics["entity_f1"] for run in runs]


def splits(args: argparse.Namespace) -> None:
    """Each arm's test F1 in several work folders (one split seed each), and its gain over the random arm: per split
    (mean over seeds) and on average over the splits."""
    from medner.report import mean_sd

    states = [Work(Path(work).resolve()).state for work in args.work]
    arms = [arm for arm in ("half", *STORES) if all("train_runs" in arm_entry(state, arm) for state in states)]
    f1 = [{arm: runs_test_f1(arm_entry(state, arm)["train_runs"]) for arm in arms} for state in states]
    seeds = [state.get("split_seed", SPLIT_SEED) for state in states]
    gains = {over: {arm: [float(np.mean(run[arm]) - np.mean(run[over])) for run in f1] for arm in arms}
             for over in ("half", "half+random")}

    def gain_cells(arm: str) -> str:
        over_half = ", ".join(f"{g:+.3f}" for g in gains["half"][arm]) if arm != "half" else "–"
        if arm in ("half", "half+random"):
            return f"{over_half} | – | –"
        over_random = gains["half+random"][arm]
        return f"{over_half} | " + ", ".join(f"{g:+.3f}" for g in over_random) + f" | {np.mean(over_random):+.3f}"

    lines = [
        "# The review loop on several splits", "",
        "The simulation of benchmarks/review_loop.md run on other halvings of BeHealthy's train split (another half "
        "A trains the served model, another half B is reviewed): test entity F1, mean ± sd over "
        f"{len(f1[0]['half'])} training seeds, per split seed; the arms every work folder holds. Gains: an arm's "
        "mean test F1 less the other arm's on the same split.", "",
        "| arm | " + " | ".join(f"split {seed}" for seed in seeds) + " | gain over no review (half), per split | "
        "gain over random, per split | mean gain over random |",
        "| --- | " + " | ".join("---:" for _ in seeds) + " | --- | --- | ---: |",
        *(f"| {arm} | " + " | ".join(mean_sd(run[arm]) for run in f1) + f" | {gain_cells(arm)} |" for arm in arms),
        "",
        "Command: `python benchmarks/review_loop.py splits " + " ".join(f"--work {work}" for work in args.work)
        + out_option(args.out, SPLITS_OUT) + "` (each work folder from `python benchmarks/review_loop.py run "
        "--work FOLDER --split-seed SEED`).",
    ]
    write_results(Path(args.out), lines, {"hardware": hardware(), "split_seeds": seeds, "work": args.work,
                                          "test_f1": dict(zip(map(str, seeds), f1, strict=True)),
                                          "gain_over_half": gains["half"], "gain_over_random": gains["half+random"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("run", help="train, import, review, export, retrain")
    start.add_argument("--notes", type=int, default=300, help="notes reviewed in each store")
    start.add_argument("--seeds", nargs="*", type=int, default=[13, 14, 15])
    start.add_argument("--data-dir", default="", help="BeHealthy folder (default: $MEDNER_DATA_DIR)")
    start.add_argument("--split-seed", type=int, default=SPLIT_SEED, help="the seed that halves the train split")
    start.add_argument("--arms", nargs="*", choices=list(STORES), help="only these arms (default: all)")
    start.add_argument("--work", default=str(WORK))
    done = sub.add_parser("report", help="write benchmarks/results/review_loop.{md,json}")
    done.add_argument("--work", default=str(WORK))
    done.add_argument("--out", type=Path, default=OUT, help="results path, without the suffix")
    several = sub.add_parser("splits", help="several split seeds' work folders side by side")
    several.add_argument("--work", action="append", required=True, help="a work folder (repeat: one per split)")
    several.add_argument("--out", type=Path, default=SPLITS_OUT, help="results path, without the suffix")
    args = parser.parse_args()
    {"run": run, "report": report, "splits": splits}[args.command](args)


if __name__ == "__main__":
    main()
