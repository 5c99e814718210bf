"""`trunkline timeline OWNER/REPO#N`: parsing the reference."""

from __future__ import annotations

import pytest

from trunkline.web.terminal import parse_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [("acme/api#12", ("acme/api", 12)), (" o.r-g/re_po.js#1 ", ("o.r-g/re_po.js", 1))],
)
def test_parse_ref(text: str, expected: tuple[str, int]) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["acme/api", "acme#1", "acme/api#", "a/b/c#1", "acme/api#x"])
def test_parse_ref_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="OWNER/REPO#NUMBER"):
        parse_ref(text)
