"""Captions for clips: the prompt (7 frames, the audio or its description, the transcript), two backends
(an OpenAI-compatible chat endpoint such as vLLM serving Qwen2.5-VL/Omni, and a local transformers
model) and the checker that decides whether a caption may enter a shard."""
from .checker import check_caption, transcript_sentences
from .prompt import CaptionRequest, build_messages

__all__ = ["CaptionRequest", "build_messages", "check_caption", "transcript_sentences"]
