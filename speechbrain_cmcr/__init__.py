"""CMCR-Net speech enhancement for SpeechBrain.

``EnhanceSpeech`` (whole files and tensors) and ``StreamingEnhancer``
(blocks of a live stream, for a causal model) are imported on first use,
so that ``import speechbrain_cmcr`` stays light.

Example
-------
>>> import speechbrain_cmcr
>>> speechbrain_cmcr.EnhanceSpeech.__name__
'EnhanceSpeech'
>>> speechbrain_cmcr.StreamingEnhancer.__name__
'StreamingEnhancer'
"""

import importlib

__version__ = "0.1.0"
# Public name to the module defining it.
_LAZY = {
    "EnhanceSpeech": "speechbrain_cmcr.inference.enhancement",
    "StreamingEnhancer": "speechbrain_cmcr.inference.streaming",
}
__all__ = list(_LAZY)


def __getattr__(name):
    """Imports the public classes lazily (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
