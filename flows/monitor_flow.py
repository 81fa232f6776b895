"""MonitorFlow: hourly drift check of live request profiles, and the action it calls for."""

from metaflow import FlowSpec, Parameter, card, current, project, retry, schedule, step, timeout

from medner.config import (
    DECISION_LOG_ENV,
    DEFAULT_REPOSITORY,
    PROFILE_DIR_ENV,
    PROJECT,
    REPOSITORY_ENV,
    TRIGGER_BACKEND_ENV,
    from_environment,
)
from monitoring.policy import DEFAULT_QUALITY_DROP
from monitoring.quality import MIN_SENTENCES


@project(name=PROJECT)  # runs and deployments namespaced by branch: prod (--production), user.NAME, test.NAME
@schedule(hourly=True)  # deployed with `step-functions create`: check the last hour of traffic every hour
class MonitorFlow(FlowSpec):
    """Compare the last window of request profiles with the served model's reference profile and act.

    Steps:
      start - merge the window's whylogs profiles and read the reference profile
      check - per-feature Hellinger drift, the level, a card with scores and whylogs' HTML drift report; with
              --review-db, the champion's entity F1 from reviews too; with --by-group, each group of notes
              against the others (bias: a table and small multiples)
      act   - the group verdicts recorded (--by-group: gauges and CloudWatch metrics per group), then the policy's
              action (warning: TrainFlow, critical: ExperimentFlow + alert), started on this run's
              own @project branch and recorded; with --promote-url the started flow exports and promotes its
              model (the loop closes by itself);
              a quality drop from reviews is acted on like critical drift
      end   - print the level and the decision
    """

    # Where things are: from the environment when the run starts or, deployed, at `step-functions create`
    profile_dir = Parameter("profile-dir", default=from_environment(PROFILE_DIR_ENV, ""),
                            help="profile store root, folder or s3:// (default: $MEDNER_PROFILE_DIR)")
    model = Parameter("model", default="ner", help="served model whose profiles are checked")
    repository = Parameter("repository", default=from_environment(REPOSITORY_ENV, DEFAULT_REPOSITORY),
                           help="Triton model repository (default: $MEDNER_REPOSITORY, else model_repository)")
    reference = Parameter("reference", default="", help="reference profile (default: the champion's)")
    window = Parameter("window", default="1h", help="window length ending at --until: 30m, 1h, 1d")
    until = Parameter("until", default="", help="window end, ISO 8601 (default: now)")
    warning = Parameter("warning", default=0.0, help="fixed warning bound (0: the noise for the window's size)")
    critical = Parameter("critical", default=0.0, help="fixed critical bound (0: none, an estimated F1 drop)")
    min_notes = Parameter("min-notes", default=0, help="fewer notes: level none (0: DriftThresholds' default)")
    trigger_backend = Parameter("trigger-backend", default=from_environment(TRIGGER_BACKEND_ENV, "local"),
                                help="local or stepfunctions (default: $MEDNER_TRIGGER_BACKEND, else local)")
    dry_run = Parameter("dry-run", default=False, help="decide, but start nothing and record nothing")
    decision_log = Parameter("decision-log", default=from_environment(DECISION_LOG_ENV, ""),
                             help="decision log JSONL or s3:// (default: $MEDNER_DECISION_LOG, else triggers' default)")
    review_db = Parameter("review-db", default="", help="review database URL: also check quality from reviews")
    max_quality_drop = Parameter("max-quality-drop", default=DEFAULT_QUALITY_DROP,
                                 help="entity F1 drop that is critical: from reviews, or estimated in a drift")
    min_reviewed_notes = Parameter("min-reviewed-notes", default=MIN_SENTENCES,
                                   help="fewer random-share reviews: no verdict")
    promote = Parameter("promote", default=False, help="the flows this run starts export to --repository and promote "
                        "through the gates: a record every server following the registry switches to")
    promote_url = Parameter("promote-url", default="", help="gRPC address of `medner serve`: the flows this run starts "
                            "export to --repository and promote there (default: they only train)")
    by_group = Parameter("by-group", default=False, help="also judge each group of notes against the other groups "
                                                         "(bias): a table, small multiples and gauges per group")
    trigger_parameters = Parameter("trigger-parameters", default="{}",
                                   help='JSON {"TrainFlow": {...}, "ExperimentFlow": {...}} for started flows')

    # Retries: every step but act only reads and computes (a retry redoes it); act starts flows under the decision's
    # name, so a retry finds the execution (or tagged local run) an earlier attempt started, and the cooldown the
    # start it recorded. Timeouts keep an hourly flow from piling up behind a hung step; act has none: on the local
    # backend it runs the started flow to its end (deployed: `--with timeout:minutes=15`, docs/data-and-flows.md).
    @retry(times=2)
    @timeout(minutes=20)
    @step
    def start(self):
        """Merge the window's profiles and read the reference profile."""
        from monitoring.policy import isoformat
        from monitoring.service import read_window

        window = read_window(self.profile_dir, self.model, repository=self.repository, reference=self.reference,
                             window=self.window, end=self.until)
        self.window_start, self.window_end = isoformat(window.start), isoformat(window.end)
        self.reference_location, self.profiles = window.reference, window.profiles
        # serialized whylogs views: small (sketches), and readable with DatasetProfileView.deserialize
        self.window_profile, self.reference_profile = window.serialized()
        print(f"{self.model}: {self.profiles} profile(s) in {self.window_start} .. {self.window_end}, "
              f"reference {self.reference_location}")
        self.next(self.check)

    @retry(times=2)
    @timeout(minutes=30)
    @card(type="blank")
    @step
    def check(self):
        """Score drift per feature, set the level and fill the card."""
        from monitoring.drift_card import drift_card
        from monitoring.service import check_serialized

        self.report, self.drift_html = check_serialized(
            self.window_profile, self.reference_profile, self.window_start, self.window_end,
            self.warning, self.critical, self.min_notes, self.profiles, self.max_quality_drop)
        drift_card(current.card, self.report, self.drift_html)
        self.quality = None
        if self.review_db:
            from monitoring.quality import review_quality

            self.quality = review_quality(self.review_db, self.repository, model=self.model,
                                          max_drop=self.max_quality_drop, min_sentences=self.min_reviewed_notes)
        self.groups = None
        if self.by_group:
            from monitoring.bias import check_groups_serialized

            self.groups = check_groups_serialized(self.profile_dir, self.model, self.reference_profile,
                                                  self.window_start, self.window_end, self.review_db, self.repository,
                                                  min_notes=self.min_notes, max_drop=self.max_quality_drop)
            if self.groups is not None:
                from monitoring.drift_card import groups_card

                groups_card(current.card, self.groups["report"])
        self.next(self.act)

    @retry(times=1)
    @step
    def act(self):
        """Apply the policy: start the flow the level calls for (or only say which, in a dry run)."""
        import json

        from monitoring.service import decide
        from monitoring.triggers import closing_the_loop

        parameters = json.dumps(closing_the_loop(json.loads(self.trigger_parameters), self.repository,
                                                 self.promote_url, self.promote))
        self.decision = decide(self.report, self.trigger_backend, self.decision_log, parameters,
                               self.dry_run, branch=current.branch_name)  # start flows on this run's own branch
        if self.groups is not None and not self.dry_run:
            from monitoring.bias import record_groups

            record_groups(self.groups["record"], self.decision_log or None)
        self.quality_decision = None
        if self.quality:
            from monitoring.quality import quality_reason

            self.quality_decision = decide(self.quality, self.trigger_backend, self.decision_log,
                                           parameters, self.dry_run, quality_reason(self.quality),
                                           branch=current.branch_name, window={"window_start": self.window_start,
                                                                               "window_end": self.window_end})
        self.next(self.end)

    @retry(times=2)
    @timeout(minutes=10)
    @step
    def end(self):
        """Print the level and the decision."""
        d = self.decision
        print(f"drift {self.report['level']} (combined {self.report['combined']}, {self.report['counts']['notes']} "
              f"notes): action {d['action']}, {d['status']}{' ' + d['target'] if d.get('target') else ''}")
        if self.quality:
            q = self.quality_decision
            print(f"quality from reviews {self.quality['level']} (entity F1 {self.quality['entity_f1']} on "
                  f"{self.quality['sentences']} notes vs {self.quality['champion_entity_f1']}): action {q['action']}, "
                  f"{q['status']}")


if __name__ == "__main__":
    MonitorFlow()
