"""Groups of notes (a clinic, a specialty: a short label the caller chooses) for monitoring bias: the model's
inputs and quality per group. A group is a label, never note text: :func:`validate_group` accepts 1 to 32 letters,
digits, ``.``, ``_`` or ``-`` (no spaces, so a sentence cannot pass) and its error never echoes the value.
"""

from __future__ import annotations

import re

GROUP_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
OTHER = "other"  # where the groups past a window's first MAX_GROUPS are pooled
MAX_GROUPS = 16  # distinct groups profiled per window: profiles and metrics stay bounded whatever callers send
GROUP_PARAMETER = "group"  # the Triton request parameter that carries a request's group


GROUP_RULE = ("a group is 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit (a short label such "
              "as a clinic, never note text)")


class GroupError(ValueError):
    """A group label that is not one (the message does not quote it)."""


def validate_group(group: str | None) -> str | None:
    """``group`` if it is a valid label, None for no group (None or empty); GroupError otherwise."""
    if group is None or group == "":
        return None
    if not isinstance(group, str) or not GROUP_PATTERN.fullmatch(group):
        raise GroupError(GROUP_RULE)
    return group


def request_groups(parameters: list[str | None]) -> tuple[list[str | None], dict[int, str]]:
    """Each Triton request's group from its parameters (JSON, as the python backend's ``request.parameters()``
    gives them), and the requests whose group is not a label (index -> why)."""
    import json

    groups: list[str | None] = []
    refused: dict[int, str] = {}
    for index, text in enumerate(parameters):
        try:
            value = json.loads(text).get(GROUP_PARAMETER) if text and text != "{}" else None
            groups.append(validate_group(value))
        except (GroupError, ValueError, AttributeError):
            groups.append(None)
            refused[index] = f"bad group parameter: {GROUP_RULE}"
    return groups, refused


def pooled(groups: list[str | None], known: set[str], max_groups: int = MAX_GROUPS) -> list[str | None]:
    """``groups`` with every group beyond the first ``max_groups`` distinct ones (``known`` so far, updated in
    place) replaced by :data:`OTHER`; None (no group) stays None."""
    out: list[str | None] = []
    for group in groups:
        if group is None:
            out.append(None)
            continue
        if group not in known and len(known) < max_groups:
            known.add(group)
        out.append(group if group in known else OTHER)
    return out
