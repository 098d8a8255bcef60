"""The one media layer of the project, shared by curation, training, generation and evaluation:

- `tools`: ffprobe/ffmpeg through subprocess (`ffprobe_json`, `run_tool`, `count_video_frames`);
- `frames`: frames of a file through an ffmpeg pipe (`iter_frames`, `read_frames`, `pick_frames`,
  `sample_frames`, `video_info`): any file name, rotation applied and pixels made square, scaled while
  decoding, resampled to a rate by the nearest-frame rule;
- `audio`: `load_audio` (ffmpeg: files, long sources in windows) and `decode_audio` (in process:
  shard members and aligned clips; soundfile for FLAC/WAV, PyAV for containers);
- `av_clip`: `read_video`, N frames at a rate from a path or from bytes with PyAV, turned and made
  square as `frames` does, resized and centre-cropped while decoding (raw-mode training, the latent
  stage, encoders, evaluation, a video given to generation).

It imports nothing of the rest of the project. `tools`, `frames` and `audio` import only numpy and the
standard library at import time (PyAV and soundfile inside the functions that need them), so they also
run in the second environment (`.venv-models`); tests/test_imports.py checks both.
"""
