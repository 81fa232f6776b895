"""ExtractFlow: an archive of notes into the records database, shard by shard, resumable."""

from metaflow import FlowSpec, Parameter, card, current, project, resources, retry, step, timeout

from medner.config import DEFAULT_REPOSITORY, PROJECT
from records.extract import DEFAULT_BATCH
from records.sources import DEFAULT_SHARD_BYTES, DEFAULT_SHARD_NOTES


@project(name=PROJECT)  # runs and deployments namespaced by branch: prod (--production), user.NAME, test.NAME
class ExtractFlow(FlowSpec):
    """Read every note of an archive into the records store (docs/records.md).

    Steps:
      start   - list the notes (a folder of .txt, JSONL, or an s3:// prefix of either), cut them into shards,
                bring the store's schema up to date and fix the model version every shard uses
      extract - one shard per task (run --max-workers N: N at once): notes this model version already extracted
                are skipped, the rest tagged through Triton (--url) or in-process, a transaction per batch;
                a refused note is an error row, a server that cannot answer fails the attempt (retried 3 times,
                each going on where the last stopped; then resume re-runs it)
      join    - gather the shards' counts
      end     - a card: notes, entities per type, errors, throughput per shard, the model version
    """

    notes = Parameter("notes", required=True, help="folder of .txt notes, a .jsonl file of {id, text}, or s3://")
    db = Parameter("db", default="", help="records database URL (default: $MEDNER_RECORDS_DB, else "
                                          "sqlite:///records.db; a password belongs in the variable)")
    url = Parameter("url", default="", help="Triton gRPC address: tag through the server (default: in-process)")
    repository = Parameter("repository", default=DEFAULT_REPOSITORY, help="model repository for in-process tagging")
    model = Parameter("model", default="", help="served model (default: ner_int8 where the champion passed its "
                                                "INT8 gate, else ner; through --url: ner)")
    shard_notes = Parameter("shard-notes", default=DEFAULT_SHARD_NOTES, help="notes per shard at most")
    shard_mb = Parameter("shard-mb", default=DEFAULT_SHARD_BYTES // 2**20, help="megabytes of notes per shard at most")
    batch_size = Parameter("batch-size", default=DEFAULT_BATCH, help="notes per call and per transaction")
    threads = Parameter("threads", default=0, help="ONNX Runtime threads per in-process worker (0: every core)")

    # Retries: listing and migrating again is harmless (migrations to the head are a no-op), and a shard is the unit
    # of retry: a retried worker skips the notes its model version already stored (a transaction per batch), so a
    # lost worker or a server that stopped answering costs a retry, not a resume. Timeouts bound a hung worker.
    @retry(times=2)
    @timeout(hours=1)  # listing a large S3 prefix
    @step
    def start(self):
        """List and shard the notes, migrate the store, fix the model version."""
        from pathlib import Path

        from metaflow.exception import MetaflowException

        from records.extract import plan_extraction
        from records.sources import InputError

        try:
            plan = plan_extraction(notes=self.notes, db=self.db or None, url=self.url,
                                   repository=Path(self.repository), model=self.model,
                                   shard_notes=self.shard_notes, shard_bytes=self.shard_mb * 2**20)
        except InputError as err:  # the input as a whole: one line, not a traceback
            raise MetaflowException(str(err)) from None
        self.model_name, self.model_version, self.note_count = plan.model, plan.version, plan.notes
        self.shards = list(enumerate(plan.shards))
        print(f"{plan.notes} notes in {len(plan.shards)} shards; model {plan.model} version {plan.version}")
        self.next(self.extract, foreach="shards")

    @retry(times=3)
    @timeout(hours=3)  # a shard: 10,000 notes at most (--shard-notes); the retry goes on where it stopped
    @resources(cpu=2, memory=4096)  # a worker: a Triton client (or ONNX Runtime on CPU); --with batch in the cloud
    @step
    def extract(self):
        """Extract one shard into the store."""
        from pathlib import Path

        from records.extract import run_shard

        number, refs = self.input
        self.stats = run_shard(refs=refs, db=self.db or None, url=self.url, repository=Path(self.repository),
                               model=self.model_name, version=self.model_version, run=current.pathspec,
                               shard=number, batch_size=self.batch_size, threads=self.threads or None).as_dict()
        print(f"shard {number}: {self.stats['extracted']} extracted, {self.stats['skipped']} skipped, "
              f"{self.stats['errors']} errors, {self.stats['notes_per_second']} notes/s")
        self.next(self.join)

    @retry(times=2)
    @step
    def join(self, inputs):
        """Gather the shards' counts."""
        self.merge_artifacts(inputs, include=["model_name", "model_version", "note_count"])
        self.shard_stats = sorted((i.stats for i in inputs), key=lambda s: s["shard"])
        self.next(self.end)

    @retry(times=2)
    @card(type="blank")
    @step
    def end(self):
        """Summarise the run in a card."""
        from records.report import extraction_card, totals

        self.totals = totals(self.shard_stats)
        extraction_card(current.card, self.shard_stats, self.model_name, self.model_version)
        print(f"{self.totals['notes']} notes: {self.totals['extracted']} extracted, {self.totals['skipped']} "
              f"skipped, {self.totals['errors']} errors; entities {self.totals['entities']}")


if __name__ == "__main__":
    ExtractFlow()
