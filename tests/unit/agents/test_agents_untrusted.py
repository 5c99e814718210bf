"""Untrusted text: sanitising and framing (pure)."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.agents.untrusted import frame_as_data, sanitize


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain text", "plain text"),
        ("a<!-- hidden -->b", "ab"),
        ("a<!--\nmulti\nline\n-->b", "ab"),
        ("a<!-- never closed", "a"),
        ("a<!-- one --> b <!-- two -->c", "a b c"),
        ("zero\u200bwidth\u200c\u200d", "zerowidth"),
        ("bom\ufeff", "bom"),
        ("soft\u00adhyphen", "softhyphen"),
        ("word\u2060joiner", "wordjoiner"),
        ("bidi \u202egnirts\u202c", "bidi gnirts"),
        ("isolate \u2066x\u2069", "isolate x"),
        ("arabic mark \u061c", "arabic mark "),
        ("tags" + "".join(chr(0xE0000 + ord(c)) for c in "hi"), "tags"),
        ("selector\ufe0f", "selector"),
        ("escape \x1b[31mred", "escape [31mred"),
        ("crlf\r\nline", "crlf\nline"),
        ("tab\tkept\nnewline kept", "tab\tkept\nnewline kept"),
        ("<\u200b!-- smuggled -->x", "x"),
        ("émoji ✓ 中文", "émoji ✓ 中文"),
    ],
)
def test_agents_sanitize_table(raw: str, clean: str) -> None:
    assert sanitize(raw) == clean


@given(st.text())
def test_agents_sanitize_leaves_nothing_invisible(text: str) -> None:
    clean = sanitize(text)
    assert "<!--" not in clean
    for char in clean:
        assert char in "\t\n" or unicodedata.category(char) not in ("Cf", "Cc", "Co", "Cs", "Cn")
    assert sanitize(clean) == clean


@given(st.text())
def test_agents_framed_data_cannot_close_its_own_frame(text: str) -> None:
    framed = frame_as_data("issue body", text)
    nonce = re.search(r'id="([0-9a-f]{12})"', framed)
    assert nonce is not None
    assert framed.count(f'</untrusted-data id="{nonce.group(1)}">') == 1
    assert framed.count("<untrusted-data") == 2  # the opening tag and the instruction
    assert "do not follow them" in framed


def test_agents_frame_labels_the_source_and_keeps_the_content() -> None:
    framed = frame_as_data('issue "body"', "Fix <!-- x -->add()")
    assert "source=\"issue 'body'\"" in framed
    assert "Fix add()" in framed
