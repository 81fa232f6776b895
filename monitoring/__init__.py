"""Monitoring of the served models: per-note features (:mod:`monitoring.features`), rolling whylogs profiles
of live requests (:mod:`monitoring.profiles`), drift against the reference profile, policy and triggers."""
