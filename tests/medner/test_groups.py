"""Group labels: short labels pass, note text never does (and is never echoed), a window's groups stay bounded."""

from __future__ import annotations

import json

import pytest

from medner.groups import MAX_GROUPS, OTHER, GroupError, pooled, request_groups, validate_group

NOTE = "Mrs Zqxmarker7731 was treated with tamoxifen."


@pytest.mark.parametrize("label", ["clinic_a", "cardiology", "site-12", "A.B", "x" * 32])
def test_short_labels_are_groups(label: str) -> None:
    assert validate_group(label) == label


@pytest.mark.parametrize("value", [NOTE, "x" * 33, "-leading", "two words", "é", "a/b", "clinic\n"])
def test_anything_else_is_refused_without_being_echoed(value: str) -> None:
    with pytest.raises(GroupError) as refused:
        validate_group(value)
    assert value not in str(refused.value) and "Zqxmarker7731" not in str(refused.value)


def test_no_group_is_none() -> None:
    assert validate_group(None) is None and validate_group("") is None


def test_request_parameters_give_each_request_its_group_or_its_refusal() -> None:
    groups, refused = request_groups(["{}", json.dumps({"group": "clinic_a"}), json.dumps({"group": NOTE}), None,
                                      json.dumps({"other": 1}), "not json"])
    assert groups == [None, "clinic_a", None, None, None, None]
    assert set(refused) == {2, 5} and all("Zqxmarker7731" not in message for message in refused.values())


def test_groups_past_the_bound_are_pooled_as_other() -> None:
    known: set[str] = set()
    first = pooled([f"g{i}" for i in range(MAX_GROUPS)], known)
    assert first == [f"g{i}" for i in range(MAX_GROUPS)]
    assert pooled(["g0", "new", None, "g3"], known) == ["g0", OTHER, None, "g3"]  # known ones stay themselves
    assert len(known) == MAX_GROUPS
