"""live_decode: DECODE-style deep-learning SMLM localization, live during acquisition."""

__version__ = "0.1.0"
