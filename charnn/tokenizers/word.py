"""Words: words and punctuation as tokens, newlines kept as tokens so generated text keeps its
lines. `split_words` is also what `charnn embed` trains word2vec on, so word vectors line up
with word-level language models.
"""

from __future__ import annotations

import re

# a word (letters/digits, inner apostrophes and hyphens kept: don't, well-known), a newline, or
# any other single non-space character (punctuation, symbols)
WORD_RE = re.compile(r"\w+(?:['’\-]\w+)*|\n|[^\w\s]", re.UNICODE)


def split_words(text: str) -> list[str]:
    """'Hello, world.\\n' -> ['Hello', ',', 'world', '.', '\\n']"""
    return WORD_RE.findall(text)
