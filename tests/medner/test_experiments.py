from __future__ import annotations

import json
from pathlib import Path

import pytest

from medner.data import read_behealthy
from medner.experiments import (
    DEFAULT_GRID,
    LEVER_GRID,
    Candidate,
    CandidateResult,
    GridError,
    parse_grid,
    parse_seeds,
    run_candidate,
    runnable,
    select_challenger,
    select_ensemble,
    with_seeds,
)


def test_default_grid_has_the_crf_baseline_and_transformers() -> None:
    kinds = [c.kind for c in parse_grid(DEFAULT_GRID)]
    assert kinds.count("crf") == 1 and kinds.count("transformer") >= 3


def test_grid_from_inline_json_or_a_file(tmp_path: Path) -> None:
    grid = [{"name": "a", "kind": "crf", "c1": 0.5}, {"name": "b", "kind": "transformer", "epochs": 1}]
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid))
    expected = [Candidate("a", "crf", {"c1": 0.5}), Candidate("b", "transformer", {"epochs": 1})]
    assert parse_grid(json.dumps(grid)) == parse_grid(str(path)) == expected


@pytest.mark.parametrize(("grid", "message"), [
    ("[{", "not JSON"),
    ("[]", "non-empty"),
    ('[{"name": "x", "kind": "svm"}]', "candidate 0: needs a name and a kind"),
    ('[{"name": "x", "kind": "transformer", "learnin_rate": 1}]', "unknown transformer parameter"),
    ('[{"name": "x", "kind": "crf", "epochs": 1}]', "unknown crf parameter"),
    ('[{"name": "x", "kind": "crf"}, {"name": "x", "kind": "crf"}]', "appears twice"),
])
def test_bad_grids_say_what_is_wrong(grid: str, message: str) -> None:
    with pytest.raises(GridError, match=message):
        parse_grid(grid)


def test_crf_candidate_learns_the_tiny_corpus(tiny_corpus: Path) -> None:
    data = read_behealthy(tiny_corpus)
    result = run_candidate(Candidate("crf", "crf", {"max_iterations": 50}), data["train"], data["test"], data["test"])
    assert result.dev["entity_f1"] > 0.5  # synthetic sentences are regular: a CRF gets most of them
    assert result.model_mb > 0 and result.latency_ms > 0 and result.model_files == {}


def _result(name: str, dev_f1: float, latency: float, servable: bool = True) -> CandidateResult:
    return CandidateResult(name, "transformer" if servable else "crf", {}, {"entity_f1": dev_f1},
                           {"entity_f1": 1.0 - dev_f1}, 1.0, 1.0, latency, {"model": b"x"} if servable else {})


def test_challenger_is_chosen_on_dev_among_servable_candidates() -> None:
    results = [_result("crf", 0.9, 1.0, servable=False), _result("slow", 0.7, 20.0), _result("fast", 0.7, 5.0),
               _result("worse", 0.6, 1.0)]
    # best dev F1, the tie broken by speed, test F1 ignored (no budget: that is the next test)
    assert select_challenger(results, max_cost_ratio=0).name == "fast"
    assert select_challenger(results[:1]).name == "crf"  # nothing servable: the best there is


def test_a_candidate_over_the_serving_budget_is_not_chosen_unless_allowed() -> None:
    results = [_result("large", 0.75, 30.0), _result("large", 0.73, 34.0), _result("small", 0.66, 5.0),
               _result("medium", 0.65, 9.0), _result("crf", 0.9, 0.1, servable=False)]  # the CRF sets no budget
    assert select_challenger(results).name == "small"  # large costs 6.4x the cheapest servable one
    assert select_challenger(results, max_cost_ratio=7).name == "large"
    assert select_challenger(results, max_cost_ratio=0).name == "large"  # no budget
    assert select_challenger(results[2:]).name == "small"  # medium is within budget but worse on dev


def test_with_several_seeds_the_best_mean_on_dev_wins_and_its_best_seed_is_kept() -> None:
    lucky = [_result("lucky", 0.80, 1.0), _result("lucky", 0.50, 1.0)]  # one good seed, mean 0.65
    steady = [_result("steady", 0.70, 1.0), _result("steady", 0.68, 1.0)]  # mean 0.69
    chosen = select_challenger([*lucky, *steady])
    assert chosen is steady[0]


def test_an_ensemble_of_seeds_pays_for_every_seed_in_the_budget() -> None:
    large = [_result("large", 0.75, 6.0), _result("large", 0.73, 6.0), _result("large", 0.74, 6.0)]
    small = [_result("small", 0.66, 5.0), _result("small", 0.67, 5.0), _result("small", 0.65, 5.0)]
    assert select_challenger([*large, *small]) is large[0]  # one large model: 1.2x the small one, in budget
    with pytest.raises(ValueError, match="raise --max-cost-ratio"):  # three of either: 3x a single small model
        select_ensemble([*large, *small])
    assert select_ensemble([*large, *small], max_cost_ratio=3.2) == small  # three large ones: 3.6x
    assert select_ensemble([*large, *small], max_cost_ratio=0) == large  # no budget: every seed of the best


def test_seeds_multiply_transformer_candidates_only() -> None:
    candidates = parse_grid([{"name": "crf", "kind": "crf"}, {"name": "t", "kind": "transformer", "epochs": 2}])
    expanded = with_seeds(candidates, parse_seeds("13, 14,15"))
    assert [(c.name, c.params.get("seed")) for c in expanded] == [("crf", None), ("t", 13), ("t", 14), ("t", 15)]
    assert all(c.params["epochs"] == 2 for c in expanded[1:])
    assert with_seeds(candidates, parse_seeds("")) == candidates
    with pytest.raises(GridError, match="comma-separated integers"):
        parse_seeds("13;14")


def test_named_grids_include_the_accuracy_levers() -> None:
    levers = parse_grid("levers")
    assert levers[0].name == "default-4ep" and all(c.lever for c in levers)
    assert {c.name for c in levers} == {item["name"] for item in LEVER_GRID}


def test_a_candidate_whose_base_model_is_not_installed_is_skipped_with_the_install_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medner.base_models as base_models

    monkeypatch.setenv("MEDNER_CACHE_DIR", str(tmp_path))  # nothing unpacked in this cache
    absent = base_models.SplitZip("all-mpnet-base-v2", ("medner-test-absent-part-001",), "x.zip", 1, "0")
    monkeypatch.setattr(base_models, "MPNET", absent)
    teacher = {"teacher": "/models/teacher"}  # the default grid's student needs one
    kept, skipped = runnable(parse_grid(DEFAULT_GRID), teacher)
    assert [c.name for c in kept] == [c["name"] for c in DEFAULT_GRID if c.get("base_model") != "mpnet"]
    assert list(skipped) == ["mpnet"] and "pip install 'medner[mpnet]'" in skipped["mpnet"]
    (tmp_path / "base-models" / "all-mpnet-base-v2").mkdir(parents=True)
    (tmp_path / "base-models" / "all-mpnet-base-v2" / "config.json").write_text("{}")  # unpacked once: enough
    assert runnable(parse_grid(DEFAULT_GRID), teacher) == (parse_grid(DEFAULT_GRID), {})
    kept, skipped = runnable(parse_grid(DEFAULT_GRID))  # no teacher: the student alone is left out, and why
    assert list(skipped) == ["minilm-crf-student"] and "needs a teacher" in skipped["minilm-crf-student"]


def test_a_distillation_candidate_without_a_teacher_is_skipped_not_trained_plain() -> None:
    """Students whose base model is installed (MiniLM's always is; MPNet's is an extra) are skipped for want of a
    teacher, then kept with one."""
    from medner.base_models import missing_base_model

    students = [c for c in parse_grid("levers") if "distill_weight" in c.params]
    installed = {c.name for c in students if not missing_base_model(c.params.get("base_model", ""))}
    kept, skipped = runnable(students)
    assert installed and kept == [] and set(skipped) == {c.name for c in students}
    assert all("needs a teacher" in skipped[name] for name in installed)
    kept, skipped = runnable(students, {"teacher": "/models/mpnet"})
    assert {c.name for c in kept} == installed and set(skipped) == {c.name for c in students} - installed


@pytest.mark.slow
def test_a_teacher_override_reaches_the_distillation_candidates_only(tiny_corpus: Path, tmp_path: Path) -> None:
    data = read_behealthy(tiny_corpus)
    tiny = {"epochs": 1, "batch_size": 8, "threads": 1, "max_steps": 1, "max_train_sentences": 8}
    plain = Candidate("plain", "transformer", {})
    result = run_candidate(plain, data["train"][:8], data["test"][:4], data["test"][:4],
                           {**tiny, "teacher": str(tmp_path / "no-such-teacher")})  # ignored: plain has no teacher
    assert result.model_files
    student = Candidate("student", "transformer", {"distill_weight": 0.5})
    with pytest.raises(FileNotFoundError, match="no-such-teacher"):  # the student does read it
        run_candidate(student, data["train"][:8], data["test"][:4], data["test"][:4],
                      {**tiny, "teacher": str(tmp_path / "no-such-teacher")})
