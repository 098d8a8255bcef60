"""Caption tag grammar: `<S>spoken words<E>` spans, then one audio description at the end.

Two styles exist. Ovi's original checkpoints end the caption with `<AUDCAP>description<ENDAUDCAP>`;
newer ones end it with `Audio: description` instead. Curation reuses check_caption_tags to reject
captions from the captioning model before they reach a shard.
"""
from __future__ import annotations

import re
from typing import Literal

SPEECH_OPEN, SPEECH_CLOSE = "<S>", "<E>"
AUDCAP_OPEN, AUDCAP_CLOSE = "<AUDCAP>", "<ENDAUDCAP>"
AUDIO_PREFIX = "Audio:"

_TAG_RE = re.compile(r"<S>|<E>|<AUDCAP>|<ENDAUDCAP>")
# Near misses (`<s>`, `</S>`, `< E >`) that a captioning model produces; silently ignoring them
# would leave spoken words in the visual description.
_NEAR_TAG_RE = re.compile(r"<\s*/?\s*(?:s|e|audcap|endaudcap|end\s*audcap)\s*/?\s*>", re.IGNORECASE)
_AUDIO_PREFIX_RE = re.compile(r"(?<![A-Za-z])Audio:")
_SPEECH_SPAN_RE = re.compile(r"<S>(.*?)<E>", re.DOTALL)
_AUDCAP_SPAN_RE = re.compile(re.escape(AUDCAP_OPEN) + r"(.*?)" + re.escape(AUDCAP_CLOSE), re.DOTALL)

CaptionStyle = Literal["audcap", "audio_prefix"]


def caption_style(caption: str) -> CaptionStyle | None:
    """Which audio-description style a caption uses, or None when it has neither."""
    if AUDCAP_OPEN in caption or AUDCAP_CLOSE in caption:
        return "audcap"
    if _AUDIO_PREFIX_RE.search(_SPEECH_SPAN_RE.sub("", caption)):
        return "audio_prefix"
    return None


def restyle_caption(caption: str, style: CaptionStyle) -> str:
    """The caption with its audio description written in `style`; one without a description, or
    already in `style`, comes back unchanged. Ovi 1.0 reads `<AUDCAP>..<ENDAUDCAP>`, Ovi 1.1 `Audio:`."""
    found = caption_style(caption)
    if found is None or found == style:
        return caption
    if style == "audio_prefix":
        return _AUDCAP_SPAN_RE.sub(lambda m: f"{AUDIO_PREFIX} {m.group(1).strip()}", caption)
    # The `Audio:` description runs to the end of the caption; spoken words may say "Audio:" too.
    masked = _SPEECH_SPAN_RE.sub(lambda m: " " * len(m.group()), caption)
    start = [m.start() for m in _AUDIO_PREFIX_RE.finditer(masked)][-1]
    description = caption[start + len(AUDIO_PREFIX):].strip()
    return f"{caption[:start]}{AUDCAP_OPEN}{description}{AUDCAP_CLOSE}"


def speech_spans(caption: str) -> list[str]:
    """The spoken words of each well-formed `<S>..<E>` span, in order."""
    return [m.group(1).strip() for m in _SPEECH_SPAN_RE.finditer(caption)]


def check_caption_tags(caption: str) -> list[str]:
    """Problems with a caption's tag structure; an empty list means the caption is well formed.

    Rules: speech spans `<S>..<E>` are balanced, not nested and not empty; the caption ends with
    exactly one audio description, either `<AUDCAP>..<ENDAUDCAP>` (nothing but whitespace after
    it) or `Audio: ..`, placed after every speech span.
    """
    if not isinstance(caption, str) or not caption.strip():
        return ["caption is empty; it needs a visual description and an audio description"]
    problems: list[str] = []
    for m in _NEAR_TAG_RE.finditer(caption):
        if not _TAG_RE.fullmatch(m.group()):
            problems.append(
                f"malformed tag {m.group()!r} at char {m.start()}: tags are exactly "
                f"{SPEECH_OPEN}, {SPEECH_CLOSE}, {AUDCAP_OPEN}, {AUDCAP_CLOSE} (case-sensitive, no slash)"
            )
    tags = [(m.start(), m.group()) for m in _TAG_RE.finditer(caption)]
    problems += _check_nesting(caption, tags)
    if caption_style(caption) == "audcap":
        problems += _check_audcap_last(caption, tags)
    else:
        problems += _check_audio_prefix(caption, tags)
    return problems


def _check_nesting(caption: str, tags: list[tuple[int, str]]) -> list[str]:
    problems: list[str] = []
    speech_at: int | None = None  # where the open <S> is, if any
    audcap_at: int | None = None
    for pos, tag in tags:
        if tag == SPEECH_OPEN:
            if speech_at is not None:
                problems.append(f"<S> at char {pos} opens a speech span inside the one opened at char {speech_at}; "
                                "close the first with <E> (spans do not nest)")
            elif audcap_at is not None:
                problems.append(f"<S> at char {pos} is inside the <AUDCAP> opened at char {audcap_at}; "
                                "speech spans belong before the audio description")
            speech_at = pos
        elif tag == SPEECH_CLOSE:
            if speech_at is None:
                problems.append(f"<E> at char {pos} closes no <S>; add <S> before the spoken words or drop the <E>")
            else:
                if not caption[speech_at + len(SPEECH_OPEN):pos].strip():
                    problems.append(f"speech span at char {speech_at} is empty; put the spoken words between <S> and <E>")
                speech_at = None
        elif tag == AUDCAP_OPEN:
            if speech_at is not None:
                problems.append(f"unclosed <S> at char {speech_at}: <AUDCAP> at char {pos} comes before its <E>")
                speech_at = None
            if audcap_at is not None:
                problems.append(f"<AUDCAP> at char {pos} is nested in the <AUDCAP> opened at char {audcap_at}")
            audcap_at = pos
        else:  # AUDCAP_CLOSE
            if speech_at is not None:
                problems.append(f"unclosed <S> at char {speech_at}: <ENDAUDCAP> at char {pos} comes before its <E>")
                speech_at = None
            if audcap_at is None:
                problems.append(f"<ENDAUDCAP> at char {pos} closes no <AUDCAP>")
            else:
                if not caption[audcap_at + len(AUDCAP_OPEN):pos].strip():
                    problems.append(f"audio description at char {audcap_at} is empty")
                audcap_at = None
    if speech_at is not None:
        problems.append(f"unclosed <S> at char {speech_at}: add <E> after the spoken words")
    if audcap_at is not None:
        problems.append(f"unclosed <AUDCAP> at char {audcap_at}: end the audio description with <ENDAUDCAP>")
    return problems


def _check_audcap_last(caption: str, tags: list[tuple[int, str]]) -> list[str]:
    problems: list[str] = []
    opens = [pos for pos, tag in tags if tag == AUDCAP_OPEN]
    closes = [pos for pos, tag in tags if tag == AUDCAP_CLOSE]
    if len(opens) > 1:
        problems.append(f"caption has {len(opens)} <AUDCAP> tags (at chars {opens}); "
                        "exactly one audio description is allowed, at the end")
    if opens:
        late_speech = [pos for pos, tag in tags if tag in (SPEECH_OPEN, SPEECH_CLOSE) and pos > opens[0]]
        if late_speech:
            problems.append(f"speech tag at char {late_speech[0]} comes after <AUDCAP> at char {opens[0]}; "
                            "<AUDCAP>..<ENDAUDCAP> must be the last thing in the caption")
    if closes:
        tail = caption[closes[-1] + len(AUDCAP_CLOSE):]
        if tail.strip():
            problems.append(f"text {tail.strip()[:40]!r} follows <ENDAUDCAP> at char {closes[-1]}; "
                            "<AUDCAP>..<ENDAUDCAP> must end the caption")
    return problems


def _check_audio_prefix(caption: str, tags: list[tuple[int, str]]) -> list[str]:
    # Spoken words may themselves say "Audio:", so only look outside speech spans.
    masked = _SPEECH_SPAN_RE.sub(lambda m: " " * len(m.group()), caption)
    hits = [m.start() for m in _AUDIO_PREFIX_RE.finditer(masked)]
    if not hits:
        return ["caption has no audio description: end it with <AUDCAP>description<ENDAUDCAP> "
                "(or, newer style, 'Audio: description')"]
    problems: list[str] = []
    if len(hits) > 1:
        problems.append(f"'Audio:' appears {len(hits)} times (at chars {hits}); exactly one audio description "
                        "is allowed, at the end")
    late_speech = [pos for pos, tag in tags if tag in (SPEECH_OPEN, SPEECH_CLOSE) and pos > hits[0]]
    if late_speech:
        problems.append(f"speech tag at char {late_speech[0]} comes after 'Audio:' at char {hits[0]}; "
                        "the audio description must be the last thing in the caption")
    if not caption[hits[-1] + len(AUDIO_PREFIX):].strip():
        problems.append(f"'Audio:' at char {hits[-1]} has no description after it")
    return problems
