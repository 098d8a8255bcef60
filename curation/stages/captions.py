"""Caption stage: ask the captioner, check the answer, retry with the problems as feedback, else reject.

A clip only reaches a shard with a caption that passes `curation.captioning.check_caption`: data_specs'
tag grammar, the configured audio-description style, and the transcript quoted in order inside
<S>..<E>. A caption from the input manifest, when present, is checked the same way and kept if good.
"""
from __future__ import annotations

from typing import Any, ClassVar

from ..config import CaptionConfig
from ..stage import Resources, Row, Stage

def make_captioner(config: CaptionConfig) -> Any:
    from ..captioning.backends import OpenAIChatCaptioner, TransformersCaptioner

    if config.backend == "local":
        c = config.local
        return TransformersCaptioner(c.model_dir or "", c.max_new_tokens, c.device)
    e = config.endpoint
    return OpenAIChatCaptioner(e.base_url, e.model, e.api_key_env, e.timeout_s, e.max_tokens, e.temperature,
                               e.audio_mode)


def audio_description(row: Row) -> str:
    """What is known about the audio without hearing it, for vision-only captioners."""
    scores = row.get("scores", {})
    parts = []
    if row.get("speech_spans"):
        parts.append(f"speech in {len(row['speech_spans'])} stretch(es)")
    else:
        parts.append("no speech detected")
    if "mean_volume_db" in scores:
        parts.append(f"mean volume {scores['mean_volume_db']:.0f} dB")
    return "; ".join(parts)


class CaptionStage(Stage):
    name: ClassVar[str] = "captions"
    takes_audio_only: ClassVar[bool] = True  # audio-only segments: no frames, their audio and transcript

    def __init__(self, config: CaptionConfig, captioner: Any = None):
        self.config = config
        self.batch_size = config.batch_size  # type: ignore[misc]
        self.resources = Resources(cpus=1.0, actors=config.actors)  # type: ignore[misc]
        self._captioner = captioner

    def setup(self) -> None:
        if self._captioner is None:
            self._captioner = make_captioner(self.config)

    def request(self, row: Row) -> Any:
        from ..captioning.prompt import CaptionRequest, sample_frames_jpeg, wav_bytes
        from ..captioning.checker import transcript_sentences
        from ovi_pl.media.audio import load_audio
        from ovi_pl.media.frames import frame_source

        transcript = row.get("transcript") or {}
        sentences = transcript_sentences([s["text"] for s in transcript.get("segments", []) if s.get("text")])
        frames = []
        if row.get("mp4_path"):
            source, _ = frame_source(row["mp4_path"], row.get("frames_path"), width=self.config.frame_width,
                                     num_frames=row.get("video", {}).get("num_frames"))
            frames = sample_frames_jpeg(source, self.config.num_frames, self.config.frame_width)
        audio_src = row.get("flac_path") or row.get("mp4_path")
        wav = wav_bytes(load_audio(audio_src)) if audio_src else None
        return CaptionRequest(frames, sentences, wav, audio_description(row), self.config.style)

    def process_batch(self, rows: list[Row]) -> list[Row]:
        from ..captioning.backends import CaptionBackendError
        from ..captioning.checker import check_caption

        self.setup()
        out = []
        for row in rows:
            req = self.request(row)
            given = (row.get("caption") or "").strip()
            if given and self.config.keep_manifest_caption and not check_caption(given, req.transcript,
                                                                                   self.config.style):
                out.append(row)
                continue
            problems: list[str] = []
            caption = ""
            for _attempt in range(1 + self.config.retries):
                req.feedback = problems
                try:
                    caption = self._captioner.caption(req)
                except CaptionBackendError as exc:
                    problems = [str(exc)]
                    continue
                problems = check_caption(caption, req.transcript, self.config.style)
                if not problems:
                    break
            if problems:
                out.append(self.reject(row, "bad_caption", f"after {1 + self.config.retries} attempts: "
                                       + "; ".join(problems)[:1000], caption_attempts=float(1 + self.config.retries)))
            else:
                out.append({**row, "caption": caption})
        return out
