"""ovi-pl: curation and Lightning training for Ovi-style joint audio-video generation."""

__version__ = "0.1.0"
