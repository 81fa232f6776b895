"""Monitoring of the served models: per-sentence features (:mod:`monitoring.features`), rolling whylogs profiles
of live requests (:mod:`monitoring.profiles`), drift against the reference profile (:mod:`monitoring.drift`, its
entry points in :mod:`monitoring.service`), the accuracy estimated without labels (:mod:`monitoring.estimation`),
policy and triggers."""
