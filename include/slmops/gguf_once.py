"""Parse a GGUF file once while transformers converts it.

transformers' GGUF path parses the whole file's metadata three times (for the tokenizer,
the config and the weights: about 2 s each for a 49k-token vocabulary, all in Python) and
builds gguf-py's tensor-name map once per submodule (397 times for a 30-layer Llama).
Inside ``parsed_once()`` each path is parsed once and each name map built once; what
transformers computes from them is unchanged (both are read-only to it).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator


@contextlib.contextmanager
def parsed_once() -> Iterator[None]:
    """gguf-py's GGUFReader and get_tensor_name_map, memoized until the block ends.

    transformers imports both from ``gguf`` at call time, so replacing the module's
    attributes is enough; the originals are back on exit and the parsed files released.
    """
    import gguf

    real_reader, real_name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[str, object] = {}

    def reader(path, mode="r"):
        if mode != "r":  # a writable memmap is not shared
            return real_reader(path, mode)
        key = os.path.realpath(path)
        if key not in readers:
            readers[key] = real_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    gguf.get_tensor_name_map = functools.cache(real_name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_name_map
        readers.clear()
