"""CMCR-Net speech enhancement for SpeechBrain.

``EnhanceSpeech`` is imported on first use, so that ``import
speechbrain_cmcr`` stays light.

Example
-------
>>> import speechbrain_cmcr
>>> speechbrain_cmcr.EnhanceSpeech.__name__
'EnhanceSpeech'
"""

__version__ = "0.1.0"
__all__ = ["EnhanceSpeech"]


def __getattr__(name):
    """Imports ``EnhanceSpeech`` lazily (PEP 562)."""
    if name == "EnhanceSpeech":
        from speechbrain_cmcr.inference.enhancement import EnhanceSpeech

        return EnhanceSpeech
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
