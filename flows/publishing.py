"""What TrainFlow and ExperimentFlow share, in Metaflow's BaseFlow pattern (Parameters and helpers, no steps):
where their data comes from, and where the model they train is exported and promoted."""

from metaflow import FlowSpec, Parameter, current

from medner.config import DEFAULT_UAT_MIN_F1


class PublishingFlow(FlowSpec):
    """A flow that trains on a DataFlow run's splits and may publish the model it trains."""

    data_run = Parameter("data-run", default="", help="DataFlow run pathspec (default: latest successful)")
    data_dir = Parameter("data-dir", default="", help="prepare data from this folder instead of a DataFlow run")
    repository = Parameter("repository", default="", help="Triton model repository to export to (a folder or "
                           "s3://; default: none)")
    promote = Parameter("promote", default=False, help="promote the exported model through every gate: a record "
                        "write that every `medner serve` following the registry switches to (no server address "
                        "needed: a Batch task reaches the bucket, not the pods)")
    promote_url = Parameter("promote-url", default="", help="gRPC address of a `medner serve` to switch at once "
                            "(implies --promote; admin key from $MEDNER_ADMIN_KEY); default: export only")
    uat_min_f1 = Parameter("uat-min-f1", default=DEFAULT_UAT_MIN_F1,
                           help="entity F1 on the acceptance notes a promoted model needs")

    def load_splits(self) -> None:
        """The train/dev/test splits of the DataFlow run (default: the latest on this flow's @project branch), or
        of the corpus prepared here, as artifacts with their version and source."""
        from medner.steps import load_data

        data = load_data(data_run=self.data_run, data_dir=self.data_dir, branch=current.branch_name)
        self.train_data, self.dev_data, self.test_data = data.train, data.dev, data.test
        self.data_version, self.data_source = data.version, data.source
