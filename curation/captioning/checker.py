"""Is a generated caption fit for a shard? data_specs' tag grammar plus the transcript and style rules."""
from __future__ import annotations

import re
from typing import Literal

from data_specs import caption_style, check_caption_tags, speech_spans

CaptionStyle = Literal["audcap", "audio_prefix"]
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_NON_WORD = re.compile(r"[^\w']+", re.UNICODE)


def normalise_words(text: str) -> str:
    """Lower case, punctuation dropped, single spaces: models re-punctuate quotes freely."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def transcript_sentences(segments_text: list[str] | str) -> list[str]:
    """The transcript's sentences (split at . ! ?), empty ones dropped."""
    texts = [segments_text] if isinstance(segments_text, str) else segments_text
    out = []
    for text in texts:
        out += [s.strip() for s in _SENTENCE_END.split(text.strip()) if normalise_words(s)]
    return out


def check_caption(caption: str, sentences: list[str] = (), style: CaptionStyle = "audcap") -> list[str]:
    """Problems with `caption` (empty list: accept).

    - the tag grammar of data_specs (balanced <S>..<E>, one audio description at the end);
    - the configured audio-description style (<AUDCAP>..<ENDAUDCAP> or `Audio: ...`);
    - every transcript sentence appears inside the <S>..<E> spans, in transcript order
      (compared on words: case and punctuation are ignored).
    """
    problems = check_caption_tags(caption)
    if problems:
        return problems
    found = caption_style(caption)
    if found != style:
        want = "<AUDCAP>description<ENDAUDCAP>" if style == "audcap" else "'Audio: description'"
        problems.append(f"audio description is in the {found} style; this run wants {want} at the end")
    spoken = " " + " ".join(normalise_words(s) for s in speech_spans(caption)) + " "
    position = 0
    for sentence in sentences:
        needle = " " + normalise_words(sentence) + " "
        at = spoken.find(needle, position)
        if at < 0:
            where = "out of order" if spoken.find(needle) >= 0 else "missing from the <S>..<E> spans"
            problems.append(f"transcript sentence {sentence!r} is {where}; speech spans must quote the transcript "
                            "in order")
            continue
        position = at + len(needle) - 1
    if not sentences and speech_spans(caption):
        problems.append("caption has <S>..<E> speech but the transcript has none; spoken words must come from the "
                        "transcript")
    return problems
