"""DataFlow: the annotated corpus, validated, split, versioned and described."""

from metaflow import FlowSpec, Parameter, card, current, project, retry, step, timeout

from medner.config import PROJECT


@project(name=PROJECT)  # runs and deployments namespaced by branch: prod (--production), user.NAME, test.NAME
class DataFlow(FlowSpec):
    """Read, validate, split and version the annotated corpus.

    Steps:
      start - locate the BeHealthy folder and any extra annotation files added to train
      split - read and validate them (a malformed line fails the run, naming file and line), carve the dev
              split from train with a fixed seed, version the data by content hash, count test sentences
              leaked into train, and describe the corpus in a card
      end   - print the data version
    """

    data_dir = Parameter("data-dir", default="", help="BeHealthy folder (default: $MEDNER_DATA_DIR, else the cache)")
    extra_annotations = Parameter(
        "extra-annotations", default="", help="comma-separated *.jsonl or *_sent files added to train"
    )
    dev_fraction = Parameter("dev-fraction", default=0.1, help="share of train held out as dev")
    seed = Parameter("seed", default=13, help="seed of the dev split")

    # Every step only reads the corpus and writes artifacts of its own attempt: a retry (a lost container, a
    # storage hiccup) redoes it. A malformed file fails every attempt the same way, naming file and line.
    @retry(times=2)
    @step
    def start(self):
        """Locate the corpus folder and the extra annotation files."""
        from medner.config import data_dir

        self.source_dir = str(data_dir(self.data_dir))
        self.extra_paths = [p.strip() for p in self.extra_annotations.split(",") if p.strip()]
        self.next(self.split)

    @retry(times=2)
    @timeout(hours=1)  # seconds for BeHealthy; the inbox's reviews grow the extra annotations
    @card(type="blank")
    @step
    def split(self):
        """Read, validate, split, version, check leakage and describe the corpus."""
        from medner.prepare import prepare_data

        prepared = prepare_data(self.source_dir, self.extra_paths, self.dev_fraction, self.seed)
        self.train, self.dev, self.test = prepared.train, prepared.dev, prepared.test
        self.data_version = prepared.version
        self.leaked_test_sentences = prepared.leaked_test_sentences
        self.stats = prepared.stats
        self.extra_sentences = prepared.extra_sentences  # how many added annotations (reviews) went to train/dev
        _corpus_card(self.stats, self.data_version, self.leaked_test_sentences, self.extra_sentences)
        self.next(self.end)

    @retry(times=2)
    @step
    def end(self):
        """Report the data version."""
        sizes = ", ".join(f"{name} {s['sentences']}" for name, s in self.stats.items())
        extra = self.extra_sentences
        print(f"data version {self.data_version}: {sizes}; {self.leaked_test_sentences} test sentences in train; "
              f"{extra['total']} added sentences ({extra['train']} train, {extra['dev']} dev)")


def _corpus_card(stats: dict, version: str, leaked: int, extra: dict) -> None:
    from metaflow.cards import Image, Markdown, Table

    from medner.report import entity_length_histogram

    current.card.append(Markdown(
        f"# Corpus `{version}`\n\n{leaked} test sentences also appear in train. Added annotations (e.g. exported "
        f"reviews): {extra['total']} sentences, {extra['train']} in train and {extra['dev']} in dev; test is the "
        "corpus's own, untouched."))
    current.card.append(
        Table(
            [[name, s["sentences"], s["tokens"], s["mean_sentence_tokens"], s["entities"]["D"], s["entities"]["T"]]
             for name, s in stats.items()],
            headers=["split", "sentences", "tokens", "tokens/sentence", "D entities", "T entities"],
        )
    )
    for name, s in stats.items():
        current.card.append(Markdown(f"## {name}"))
        current.card.append(Image.from_matplotlib(entity_length_histogram(s["entity_lengths"])))


if __name__ == "__main__":
    DataFlow()
