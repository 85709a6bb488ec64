"""Scraped text -> plain text: HTML tags, tag fragments and entities out, real text left alone.

Scraped product pages leave more than well-formed tags behind: a title cut off inside a tag
(`<span class="a-size-medium a-color-secondary"`), the tail of a tag whose start was cut
(`a-color-secondary">Lip Balm`), entities, comments and script blocks. A `<` that does not start
a tag ("size < 5", "<3", "a<b") is text and stays.
"""

from __future__ import annotations

import html
import re

# An attribute value: quoted (may hold '>' or '<') or bare.
_VALUE = r"""(?:"[^"]*"|'[^']*'|[^\s"'<>]+)"""
_ATTRIBUTE = rf"""[^\s"'<>/=]+(?:\s*=\s*{_VALUE})?"""
_NAME = r"[A-Za-z][\w:-]*"
_BLOCKS = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)  # an unclosed comment runs to the end
_DECLARATION = re.compile(r"<![A-Za-z\[][^<>]*>")  # <!DOCTYPE ...>, <![CDATA[
_TAG = re.compile(rf"</?{_NAME}(?:\s+{_ATTRIBUTE})*\s*/?>")  # well-formed, quotes may hold '>'
_LOOSE_TAG = re.compile(rf"</?{_NAME}[^<>]*>")  # malformed inside, but closed
# Cut off before its '>': a tag name followed by an attribute with '=', up to the next tag or the
# end. Requiring '=' keeps text such as "a <b and c" whose '<b' is followed by words only.
_OPEN_FRAGMENT = re.compile(rf"</?{_NAME}\s+[^<>]*=[^<>]*(?=<|$)")
# A bare tag name cut off at the very end ("Lip Balm <br", "</span"): known names after a space
# only, so a trailing "x <y" or "a<b" stays.
_BARE_END = re.compile(
    r"(?:^|(?<=\s))</?(?:a|b|br|div|em|font|h[1-6]|hr|i|img|li|ol|p|small|span|strong|sub|sup|table|td|th|tr|u|ul)"
    r"\s*/?$", re.IGNORECASE)
# The tail of a tag whose start was cut (`a-color-secondary">Lip Balm`): the text opens with
# anything but brackets up to a closing quote right before '>'.
_CLOSE_FRAGMENT = re.compile(r"""^[^<>]*?["']/?>""")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[^\W_]")  # a letter or digit of any script


def strip_markup(text: str | None) -> str:
    """`text` without HTML tags, tag fragments, entities, comments or whitespace runs."""
    if not text:
        return ""
    text = _unescape(str(text))
    # Fragments before whole tags: a fragment ends at the next '<', which must still be there.
    for pattern in (_BLOCKS, _COMMENT, _DECLARATION, _OPEN_FRAGMENT, _TAG, _LOOSE_TAG, _CLOSE_FRAGMENT):
        text = pattern.sub(" ", text)
    text = _BARE_END.sub(" ", text.rstrip())
    return _SPACES.sub(" ", text).strip()


def has_words(text: str) -> bool:
    """False for text that is empty or only punctuation and symbols: nothing worth embedding."""
    return bool(_WORD.search(text))


def _unescape(text: str) -> str:
    """Entities decoded until none is left: dumps often escape twice (`&amp;lt;b&amp;gt;`)."""
    for _ in range(3):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return text.replace("\xa0", " ")
