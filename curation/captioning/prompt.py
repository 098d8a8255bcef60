"""What the captioning model is shown and told: 7 evenly spaced frames, the audio (or a description of
it), the transcript, and the output format with an example from Ovi's own prompts."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

NUM_FRAMES = 7

_EXAMPLE = ("A man in a dark suit stands in a dim hallway, gesturing with his right hand as he says, "
            "<S>We leave tonight.<E>. He turns toward the door and adds, <S>Bring the map.<E>, then walks out of frame. "
            "<AUDCAP>Male voice speaking firmly, footsteps on a wooden floor.<ENDAUDCAP>")

# Audio-only segments (no frames) are described by what is heard.
_AUDIO_EXAMPLE = ("A man speaks firmly in a small room, <S>We leave tonight.<E> After a pause he adds, "
                  "<S>Bring the map.<E> <AUDCAP>Male voice speaking firmly, footsteps on a wooden floor.<ENDAUDCAP>")
_SUBJECT = {
    "video": "Write one paragraph describing this video clip for training a video-and-audio generator.\n"
             "Describe what is visible and what happens, in order: people, their appearance, actions, camera, "
             "setting, light.",
    "audio": "Write one short paragraph describing this audio recording for training an audio generator.\n"
             "Describe what is heard, in order: who speaks and how, other sounds, the room or place.",
}

_INSTRUCTIONS = """{subject}
Quote every sentence of the transcript below, word for word and in order, inside <S> and <E> tags, placed where it is spoken.
Never put anything else inside <S>..<E>; if the transcript is empty, use no <S> tags at all.
{audio_rule}
Output only the caption.
Example:
{example}"""


@dataclass
class CaptionRequest:
    """One clip's material for the captioner."""

    frames_jpeg: list[bytes]                 # 7 evenly spaced frames; none for an audio-only segment
    transcript: list[str]                    # sentences, in order
    audio_wav: bytes | None = None           # 16 kHz mono wav, for models that hear audio
    audio_description: str = ""              # for models that do not
    style: Literal["audcap", "audio_prefix"] = "audcap"
    feedback: list[str] = field(default_factory=list)  # problems with the previous attempt, for a retry


def sample_frames_jpeg(video: str | Path, count: int = NUM_FRAMES, width: int = 512, quality: int = 85) -> list[bytes]:
    """`count` evenly spaced frames as JPEG bytes, scaled down to `width` (tokens cost; 512 px shows faces)."""
    import cv2

    from ovi_pl.media.frames import sample_frames

    frames = []
    for frame in sample_frames(video, count, width=width):
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode a frame of {video} as JPEG")
        frames.append(buf.tobytes())
    return frames


def wav_bytes(samples: np.ndarray, sample_rate: int = 16000) -> bytes:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, np.asarray(samples, np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def instructions(request: CaptionRequest) -> str:
    example = _EXAMPLE if request.frames_jpeg else _AUDIO_EXAMPLE
    if request.style == "audcap":
        rule = "End with exactly one <AUDCAP>description of the sounds and voices<ENDAUDCAP>, nothing after it."
    else:
        rule = "End with exactly one line 'Audio: description of the sounds and voices', nothing after it."
        example = example.replace("<AUDCAP>", "Audio: ").replace("<ENDAUDCAP>", "")
    subject = _SUBJECT["video" if request.frames_jpeg else "audio"]
    text = _INSTRUCTIONS.format(subject=subject, audio_rule=rule, example=example)
    transcript = " ".join(request.transcript) if request.transcript else "(no speech)"
    text += f"\n\nTranscript: {transcript}"
    if request.audio_wav is None:
        text += f"\nAudio (you cannot hear it; described): {request.audio_description or 'no description'}"
    if request.feedback:
        text += "\n\nYour previous caption was rejected: " + "; ".join(request.feedback) + ". Fix that."
    return text


def build_messages(request: CaptionRequest, audio_mode: Literal["input_audio", "description"] = "input_audio"
                   ) -> list[dict[str, Any]]:
    """OpenAI chat messages: frames as base64 JPEG data URLs, audio as an input_audio part (vLLM's
    format for Qwen2.5-Omni / Qwen2-Audio) or, for vision-only models, its description in the text."""
    content: list[dict[str, Any]] = []
    for jpeg in request.frames_jpeg:
        content.append({"type": "image_url",
                        "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()}})
    with_audio = audio_mode == "input_audio" and request.audio_wav is not None
    if with_audio:
        content.append({"type": "input_audio",
                        "input_audio": {"data": base64.b64encode(request.audio_wav).decode(), "format": "wav"}})
    shown = request if with_audio else CaptionRequest(request.frames_jpeg, request.transcript, None,
                                                      request.audio_description, request.style, request.feedback)
    content.append({"type": "text", "text": instructions(shown)})
    what = "video clips" if request.frames_jpeg else "audio recordings"
    return [{"role": "system", "content": f"You write precise, factual captions of {what}."},
            {"role": "user", "content": content}]
