"""ExperimentFlow: compare candidate taggers on one data version and split; tag the best as challenger."""

from metaflow import FlowSpec, Parameter, card, current, resources, step


class ExperimentFlow(FlowSpec):
    """Train every candidate of a grid on the same data and compare them side by side.

    Steps:
      start     - load the data (latest DataFlow run, or prepare it) and parse the candidate grid
      candidate - train one candidate (foreach): CRF baseline or transformer fine-tune; score dev and test
      compare   - comparison table and chart in a card; the best on dev becomes the challenger (run tag)
      end       - print the ranking
    """

    data_run = Parameter("data-run", default="", help="DataFlow run pathspec (default: latest successful)")
    data_dir = Parameter("data-dir", default="", help="prepare data from this folder instead of a DataFlow run")
    grid = Parameter("grid", default="", help="candidates: a JSON list or a .json file (default: "
                     "medner.experiments.DEFAULT_GRID: CRF baseline + 3 MiniLM fine-tunes)")
    overrides = Parameter("overrides", default="{}", help="JSON TrainConfig fields applied to every transformer "
                          "candidate, e.g. '{\"threads\": 1}' or tiny settings for tests")

    @step
    def start(self):
        """Load the data and the candidates; fan out one branch per candidate."""
        import json

        from medner.experiments import DEFAULT_GRID, parse_grid
        from medner.pipeline import load_data

        data = load_data(self.data_run, self.data_dir)
        self.train_data, self.dev_data, self.test_data = data.train, data.dev, data.test
        self.data_version, self.data_source = data.version, data.source
        self.candidates = parse_grid(self.grid or DEFAULT_GRID)
        self.train_overrides = json.loads(self.overrides)
        print(f"data {self.data_version}: {len(self.candidates)} candidates: "
              + ", ".join(c.name for c in self.candidates))
        self.next(self.candidate, foreach="candidates")

    @resources(gpu=1, cpu=4, memory=16000)
    @step
    def candidate(self):
        """Train one candidate on train; score it on dev (selection) and test (report)."""
        from medner.experiments import run_candidate

        self.result = run_candidate(self.input, self.train_data, self.dev_data, self.test_data, self.train_overrides)
        print(f"{self.result.name}: dev entity F1 {self.result.dev['entity_f1']:.4f}, "
              f"test {self.result.test['entity_f1']:.4f}, {self.result.train_seconds:.0f}s")
        self.next(self.compare)

    @card(type="blank")
    @step
    def compare(self, inputs):
        """Rank the candidates on dev, tag this run with the challenger, draw the comparison."""
        from metaflow import Run

        from medner.experiments import select_challenger
        from medner.report import experiment_card

        self.merge_artifacts(inputs, include=["data_version", "data_source"])
        results = [branch.result for branch in inputs]
        best = select_challenger(results)
        self.results = [r.row() for r in results]
        self.challenger = best.name
        self.challenger_model_files = best.model_files  # empty for the CRF: it cannot be served by Triton
        Run(f"{current.flow_name}/{current.run_id}").add_tags(["challenger", f"challenger:{best.name}"])
        experiment_card(current.card, self.results, self.challenger, self.data_version)
        self.next(self.end)

    @step
    def end(self):
        """Print the ranking (dev entity F1 decides; test is reported)."""
        for row in sorted(self.results, key=lambda r: -r["dev"]["entity_f1"]):
            mark = "  <- challenger" if row["name"] == self.challenger else ""
            print(f"{row['name']:<28} dev {row['dev']['entity_f1']:.4f}  test {row['test']['entity_f1']:.4f}{mark}")


if __name__ == "__main__":
    ExperimentFlow()
