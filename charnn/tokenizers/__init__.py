"""Tokenizers behind one interface (base.Tokenizer) and a registry keyed by name.

Importing this package registers the built-in tokenizers: char, byte, word, bpe and unigram.
sentencepiece itself is imported only when a bpe/unigram tokenizer is built.
"""

from charnn.tokenizers import byte, char, subword, word  # noqa: F401,E402
from charnn.tokenizers.base import (  # noqa: F401
    REGISTRY,
    Tokenizer,
    escape_token,
    get_tokenizer_class,
    register,
    tokenizer_from_dict,
)
