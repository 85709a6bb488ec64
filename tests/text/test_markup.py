import pytest

from genrec_ml.text.markup import has_words, strip_markup

STRIPPED = {
    "cut off inside a tag": ('<span class="a-size-medium a-color-secondary"', ""),
    "cut off before the next tag": ('Lip Balm <span class="x" <b>Soft</b>', "Lip Balm Soft"),
    "bare tag cut off at the end": ("Lip Balm <br", "Lip Balm"),
    "closing tag cut off": ("Lip Balm </span", "Lip Balm"),
    "tail of a tag whose start was cut": ('a-color-secondary">Lip Balm', "Lip Balm"),
    "closed tags and entities": ("Nail  <b>Polish</b> &amp; Top", "Nail Polish & Top"),
    "quoted '>' inside a tag": ('<a href="x>y">Link</a> text', "Link text"),
    "malformed but closed tag": ('<p style="color:red;>Bad</p>', "Bad"),
    "escaped markup": ("&lt;span class=&quot;x&quot;&gt;Soap&lt;/span&gt;", "Soap"),
    "escaped twice": ("Tom &amp;amp; Jerry", "Tom & Jerry"),
    "comments, open one included": ("<!-- c --> Hi <!-- never closed", "Hi"),
    "script block": ("<script>var x = 1;</script>Tea", "Tea"),
    "only a closing tag": ("</span>", ""),
    "non-breaking space": ("Tea&nbsp;&nbsp;cup", "Tea cup"),
}
KEPT = ["size < 5 and <3", "a<b", "a <b and c", "x <y", 'AT&T 5" tablet', 'He said "hi" > all',
        'a 12" > 10" ruler', "Café", "dish # comic # Two Yuan"]


@pytest.mark.parametrize("case", STRIPPED, ids=list(STRIPPED))
def test_markup_is_stripped(case):
    raw, expected = STRIPPED[case]
    assert strip_markup(raw) == expected


@pytest.mark.parametrize("text", KEPT)
def test_real_text_is_left_alone(text):
    assert strip_markup(text) == text


def test_entities_are_decoded_and_whitespace_collapsed():
    assert strip_markup("Caf&eacute;\n\t au  lait") == "Café au lait"
    assert strip_markup(None) == strip_markup("") == ""


@pytest.mark.parametrize(("text", "words"), [("", False), ("...", False), ("- / &", False), ("5", True),
                                             ("Ünïcode", True), ("日本", True), ("_", False)])
def test_has_words_needs_a_letter_or_digit(text, words):
    assert has_words(text) is words
