import json
from pathlib import Path

import pytest

from medner.prepare import prepare_data
from tests.flows.conftest import card_data

pytestmark = pytest.mark.slow


def test_data_flow_publishes_versioned_splits_and_a_card(flow_runner, tiny_corpus: Path) -> None:
    flow_runner.run("data_flow.py")
    result = flow_runner.client(
        "run = Flow('DataFlow').latest_successful_run\n"
        "from metaflow.cards import get_cards\n"
        "cards = get_cards(run['split'].task)\n"
        "result = dict(version=run.data.data_version, leaked=run.data.leaked_test_sentences,"
        " sizes=[len(run.data.train), len(run.data.dev), len(run.data.test)], stats=run.data.stats,"
        " card=cards[0].get() if len(cards) else '')"
    )
    expected = prepare_data(tiny_corpus)
    assert result["version"] == expected.version
    assert result["sizes"] == [len(expected.train), len(expected.dev), len(expected.test)]
    assert result["leaked"] == expected.leaked_test_sentences
    assert result["stats"]["test"]["entities"] == expected.stats["test"]["entities"]
    card = json.dumps(card_data(result["card"]))
    assert f"Corpus `{expected.version}`" in card
    assert card.count('"type": "image"') == 3  # an entity length histogram per split


def test_data_flow_fails_with_file_and_line(flow_runner, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train_sent").write_text("a\nb\n")
    (bad / "train_label").write_text("O\nDX\n")
    (bad / "test_sent").write_text("c\n")
    (bad / "test_label").write_text("O\n")
    proc = flow_runner.run("data_flow.py", "--data-dir", str(bad), check=False)
    assert proc.returncode != 0
    assert f"{bad / 'train_label'}:2: unknown label 'DX'" in proc.stdout + proc.stderr
