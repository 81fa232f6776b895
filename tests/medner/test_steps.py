"""The flows' steps as functions: publishing a run's model is idempotent per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from medner.data import read_behealthy
from medner.registry import versions
from medner.steps import publish

pytestmark = pytest.mark.slow


def test_a_retried_publish_step_finds_its_version_and_exports_nothing(untrained_model_dir: Path, tiny_corpus: Path,
                                                                      tmp_path: Path) -> None:
    files = {str(p.relative_to(untrained_model_dir)): p.read_bytes()
             for p in sorted(untrained_model_dir.rglob("*")) if p.is_file()}
    splits = read_behealthy(tiny_corpus)
    repository = tmp_path / "repository"
    step = {"source": "TrainFlow/1", "model_files": files, "train": splits["train"], "test": splits["test"],
            "metrics": {}, "config": {"decode": "viterbi"}, "data_version": "v", "repository": str(repository)}
    assert publish(**step) == (1, None)
    assert publish(**step) == (1, None)  # the step retried, or the run resumed: the same version, nothing new
    assert [v.version for v in versions(repository)] == [1]
    assert publish(**{**step, "source": "TrainFlow/2"}) == (2, None)  # another run: its own version
