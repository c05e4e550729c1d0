"""Tokenizers behind one interface (base.Tokenizer) and a registry keyed by name.

Importing this package registers the built-in tokenizers.
"""

from charnn.tokenizers.base import (  # noqa: F401
    REGISTRY,
    Tokenizer,
    get_tokenizer_class,
    register,
    tokenizer_from_dict,
)
from charnn.tokenizers import char  # noqa: F401,E402
