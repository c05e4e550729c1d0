"""Simple properties of a text, computed from its characters alone, for finding the units that
track them (charnn.inspect.find). Each is a value per character: the state of the property
*after* reading that character, since that is what a unit's state after the character holds.

    in_quotes       1 inside a double-quoted stretch ("...", “...”), the quote marks included
                    for the opening one (after it, we are inside) and not the closing one
    bracket_depth   how many ( [ { are open
    line_position   characters since the last line break (0 on the break itself)
    in_word         1 on a letter, digit or underscore (and an apostrophe between letters)
    after_newline   1 on a line break (the model has just read one)
    uppercase_run   how many uppercase letters in a row end here (0 off an uppercase letter)
    in_comment      1 inside a code comment: # or // to the end of the line, /* ... */
                    (a comment marker inside double quotes does not count)
"""

from __future__ import annotations

import numpy as np

DESCRIPTIONS = {
    "in_quotes": "inside double quotes",
    "bracket_depth": "brackets ( [ { open",
    "line_position": "characters since the line began",
    "in_word": "inside a word",
    "after_newline": "just after a line break",
    "uppercase_run": "uppercase letters in a row",
    "in_comment": "inside a code comment",
}
NAMES = tuple(DESCRIPTIONS)

OPEN, CLOSE = "([{", ")]}"


def text_properties(text: str) -> dict[str, np.ndarray]:
    """text -> {property: (len(text),) float32} for every property in NAMES."""
    out = {name: np.zeros(len(text), dtype=np.float32) for name in NAMES}
    quotes, depth, col, upper = False, 0, 0, 0
    comment = None                # None, "line" or "block"
    for t, ch in enumerate(text):
        prev = text[t - 1] if t else ""
        nxt = text[t + 1] if t + 1 < len(text) else ""
        # quotes: an opening mark counts as inside, a closing one as outside
        if ch == '"' and comment is None:
            quotes = not quotes
        elif ch == "“":
            quotes = True
        elif ch == "”":
            quotes = False
        depth = depth + 1 if ch in OPEN else max(0, depth - 1) if ch in CLOSE else depth
        col = 0 if ch == "\n" else col + 1
        upper = upper + 1 if ch.isupper() else 0
        comment = _comment(comment, prev, ch, quotes)
        word = ch.isalnum() or ch == "_" or (ch in "'’" and prev.isalpha() and nxt.isalpha())
        row = (quotes, depth, col, word, ch == "\n", upper, comment is not None)
        for name, value in zip(NAMES, row):
            out[name][t] = value
    return out


def _comment(state: str | None, prev: str, ch: str, quoted: bool) -> str | None:
    """The comment state after `ch`: a comment starts on the second character of its marker
    (# at once); a line comment ends at the line break (outside it), a block comment at the '/'
    of its '*/' (outside it too)."""
    if state == "line":
        return None if ch == "\n" else state
    if state == "block":
        return None if prev == "*" and ch == "/" else state
    if quoted:
        return None
    if ch == "#" or (prev == "/" and ch == "/"):
        return "line"
    if prev == "/" and ch == "*":
        return "block"
    return None


def token_properties(text_props: dict[str, np.ndarray], char_index: np.ndarray) -> dict[str, np.ndarray]:
    """Per-character properties -> per-token ones, read at each token's character
    (charnn.inspect.text.char_index): {property: (T,) float32}."""
    return {name: values[char_index] if len(values) else np.zeros(len(char_index), np.float32)
            for name, values in text_props.items()}
