"""Training data: read files or hub datasets, split, format rows as text, batch tokens.

``prepare(config, tokenizer)`` is what every stage calls: it reads the sources of a
``DataConfig``, splits them (slicing syntax or a seeded hold-out), renders each row with
the chosen format and returns the ``PreparedData`` that training, validation and
evaluation share.
"""

from slmops import lazy_exports

_ENTRY_POINTS = {
    "DataConfig": "slmops.data.config",
    "prepare": "slmops.data.loading",
    "PreparedData": "slmops.data.loading",
    "load_splits": "slmops.data.loading",
    "fingerprint": "slmops.data.loading",
    "read_file": "slmops.data.readers",
    "RowFormatter": "slmops.data.formatting",
    "Example": "slmops.data.formatting",
    "encode_examples": "slmops.data.batching",
    "PaddingCollator": "slmops.data.batching",
    "PackedCollator": "slmops.data.batching",
}
__all__ = sorted(_ENTRY_POINTS)
__getattr__ = lazy_exports(__name__, _ENTRY_POINTS)
