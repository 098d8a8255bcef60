"""What each metric compares a clip with: the visual part of a prompt, or its audio description."""

from __future__ import annotations

import re

from data_specs.captions import AUDCAP_CLOSE, AUDCAP_OPEN, AUDIO_PREFIX, speech_spans

_AUDCAP_RE = re.compile(re.escape(AUDCAP_OPEN) + r"(.*?)" + re.escape(AUDCAP_CLOSE), re.DOTALL)
_SPEECH_RE = re.compile(r"<S>.*?<E>", re.DOTALL)
_AUDIO_PREFIX_RE = re.compile(r"(?<![A-Za-z])" + re.escape(AUDIO_PREFIX) + r"(.*)$", re.DOTALL)


def visual_text(prompt: str) -> str:
    """The prompt without its audio description and spoken words (CLIP sees only frames)."""
    text = _AUDCAP_RE.sub("", prompt)
    text = _SPEECH_RE.sub("", text)
    text = _AUDIO_PREFIX_RE.sub("", text)
    return re.sub(r"\s+", " ", text).strip(" .,") or prompt


def audio_text(prompt: str) -> str:
    """The audio description (`<AUDCAP>..<ENDAUDCAP>` or `Audio: ...`), with the spoken words
    appended; the whole prompt when it has neither."""
    match = _AUDCAP_RE.search(prompt) or _AUDIO_PREFIX_RE.search(_SPEECH_RE.sub("", prompt))
    if match is None:
        return prompt
    description = match.group(1).strip()
    words = " ".join(speech_spans(prompt))
    return f"{description} Speech: {words}" if words else description
