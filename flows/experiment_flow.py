"""ExperimentFlow: compare candidate taggers on one data version and split; tag the best as challenger."""

import os

from medner.config import PACKAGE_SUFFIXES, PROJECT, admin_key_secret_environment, admin_key_secrets
from medner.experiments import DEFAULT_MAX_COST_RATIO

os.environ.setdefault("METAFLOW_DEFAULT_PACKAGE_SUFFIXES", PACKAGE_SUFFIXES)  # before Metaflow reads its config

from metaflow import Parameter, card, current, environment, project, resources, retry, secrets, step, timeout  # noqa: E402
from publishing import PublishingFlow  # noqa: E402


@project(name=PROJECT)  # runs and deployments namespaced by branch: prod (--production), user.NAME, test.NAME
class ExperimentFlow(PublishingFlow):
    """Train every candidate of a grid (each transformer once per seed) on the same data and compare them.

    Steps:
      start     - load the data (latest DataFlow run, or prepare it) and parse the candidate grid and seeds (a
                  candidate whose base model is not installed is skipped, and said so)
      candidate - train one candidate with one seed (foreach): CRF baseline or transformer; score dev and test
      compare   - comparison table (mean ± sd over seeds) and chart in a card; the best mean dev F1 within the
                  serving budget (--max-cost-ratio) becomes the challenger (run tag): its best seed, or with
                  --ensemble all its seeds as one seed ensemble
      publish   - with --repository: export the challenger as a new model version (if servable); with
                  --promote-url too: promote it through the gates (test F1, acceptance notes, smoke test)
      end       - print the ranking
    """

    grid = Parameter("grid", default="", help="candidates: a grid name (default, levers: the accuracy ablation), "
                     "a JSON list or a .json file (default: medner.experiments.DEFAULT_GRID: CRF baseline, the "
                     "default MiniLM fine-tune with Viterbi and argmax decoding, the previous default, MiniLM with "
                     "a CRF layer, its student where --overrides names a teacher, and MPNet where installed)")
    seeds = Parameter("seeds", default="", help="comma-separated seeds, each transformer candidate trained once "
                      "per seed (e.g. 13,14,15; default: each candidate's own seed)")
    overrides = Parameter("overrides", default="{}", help="JSON TrainConfig fields applied to every transformer "
                          "candidate, e.g. '{\"threads\": 1}', tiny settings for tests, or the distillation "
                          "candidates' '{\"teacher\": \"TrainFlow/ID\"}'")
    max_cost_ratio = Parameter("max-cost-ratio", default=DEFAULT_MAX_COST_RATIO,
                               help="the challenger's serving budget: at most this times the latency of the "
                               "cheapest servable candidate (0: no budget)")
    ensemble = Parameter("ensemble", default=False, help="the challenger is every seed of the best candidate, served "
                         "as one seed ensemble (their mean probabilities; its cost, once per seed, in the budget)")

    @retry(times=2)
    @step
    def start(self):
        """Load the data and the candidates; fan out one branch per candidate."""
        import json

        from medner.experiments import DEFAULT_GRID, parse_grid, parse_seeds, runnable, with_seeds

        self.load_splits()
        self.train_overrides = json.loads(self.overrides)
        candidates, self.skipped = runnable(parse_grid(self.grid or DEFAULT_GRID), self.train_overrides)
        for name, reason in self.skipped.items():
            print(f"skipped {name}: {reason}")
        self.candidates = with_seeds(candidates, parse_seeds(self.seeds))
        print(f"data {self.data_version}: {len(self.candidates)} candidates: "
              + ", ".join(c.name for c in self.candidates))
        self.next(self.candidate, foreach="candidates")

    @retry(times=1)  # artifacts only: a lost (spot) GPU instance costs one more attempt
    @timeout(hours=24)
    @resources(gpu=1, cpu=4, memory=16000)
    @step
    def candidate(self):
        """Train one candidate on train; score it on dev (selection) and test (report)."""
        from medner.experiments import run_candidate
        from medner.steps import model_folder

        overrides = self.train_overrides  # the distillation candidates' teacher, named by run: its model folder
        if overrides.get("teacher"):
            overrides = {**overrides, "teacher": str(model_folder(overrides["teacher"]))}
        self.result = run_candidate(self.input, self.train_data, self.dev_data, self.test_data, overrides)
        seed = self.result.params.get("seed", "default")
        print(f"{self.result.name} (seed {seed}): dev entity F1 {self.result.dev['entity_f1']:.4f}, "
              f"test {self.result.test['entity_f1']:.4f}, {self.result.train_seconds:.0f}s")
        self.next(self.compare)

    @retry(times=2)
    @card(type="blank")
    @step
    def compare(self, inputs):
        """Rank the candidates on dev, tag this run with the challenger, draw the comparison."""
        from metaflow import Run

        from medner.experiments import ensemble_files, select_challenger, select_ensemble
        from medner.report import experiment_card

        self.merge_artifacts(inputs, include=["data_version", "data_source", "train_data", "dev_data", "test_data",
                                              "skipped"])
        results = [branch.result for branch in inputs]
        chosen = (select_ensemble(results, self.max_cost_ratio) if self.ensemble
                  else [select_challenger(results, self.max_cost_ratio)])
        best = max(chosen, key=lambda r: r.dev["entity_f1"])
        self.results = [r.row() for r in results]
        self.challenger, self.challenger_row = best.name, best.row()  # the row: which seed's model is exported
        if len(chosen) > 1:  # and which seeds make the ensemble exported instead
            self.challenger_row["ensemble_seeds"] = [r.params.get("seed") for r in chosen]
        # empty for the CRF: it cannot be served by Triton
        self.challenger_model_files = ensemble_files(chosen) if best.model_files else {}
        Run(f"{current.flow_name}/{current.run_id}").add_tags(["challenger", f"challenger:{best.name}"])
        experiment_card(current.card, self.results, self.challenger, self.data_version, self.max_cost_ratio,
                        self.skipped)
        self.next(self.publish)

    @retry(times=2)  # medner.steps.publish: a retried step finds the version it exported, promotion is gated
    @timeout(hours=2)
    @environment(vars=admin_key_secret_environment())  # the secret's id (never the key), for the task's import
    @secrets(sources=admin_key_secrets())  # $MEDNER_ADMIN_KEY from $MEDNER_ADMIN_KEY_SECRET (none: as today)
    @step
    def publish(self):
        """Export the challenger as a new model version and, if asked, promote it through the gates."""
        from medner.steps import publish

        self.exported_version, self.promotion = None, None
        if self.challenger_model_files:  # the CRF baseline cannot be served
            self.exported_version, self.promotion = publish(
                source=f"{current.flow_name}/{current.run_id}", model_files=self.challenger_model_files,
                train=self.train_data, test=self.test_data, dev=self.dev_data,
                metrics=self.challenger_row["test"],
                config=self.challenger_row["params"], data_version=self.data_version, repository=self.repository,
                promote=self.promote, promote_url=self.promote_url, uat_min_f1=self.uat_min_f1,
                candidate=self.challenger)
        self.next(self.end)

    @retry(times=2)
    @step
    def end(self):
        """Print the ranking (mean dev entity F1 decides; test is reported)."""
        from statistics import mean

        from medner.report import group_rows, mean_sd

        groups = group_rows(self.results)
        for name, runs in sorted(groups.items(), key=lambda item: -mean(r["dev"]["entity_f1"] for r in item[1])):
            mark = "  <- challenger" if name == self.challenger else ""
            print(f"{name:<28} dev {mean_sd([r['dev']['entity_f1'] for r in runs], 4)}  "
                  f"test {mean_sd([r['test']['entity_f1'] for r in runs], 4)}  ({len(runs)} runs){mark}")
        if self.exported_version:
            verdict = self.promotion["action"] if self.promotion else "not promoted (no --promote-url)"
            print(f"exported the challenger as version {self.exported_version} of {self.repository}: {verdict}")


if __name__ == "__main__":
    ExperimentFlow()
