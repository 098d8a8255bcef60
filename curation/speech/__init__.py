"""Speech tools for curation: audio loading, voice activity (silero-vad), ASR (faster-whisper or whisperx)
and cutting audio-only segments. Modules here import no pydantic and no curation config, so the
whisperx path can run in `.venv-models` (README "Environments") from plain dict settings."""
