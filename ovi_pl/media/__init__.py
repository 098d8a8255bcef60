"""The one media layer of the project: ffmpeg/ffprobe tools, audio and frame reading, shared by curation,
training, generation and evaluation. It imports only numpy, ffmpeg (a subprocess) and, for in-memory
members, PyAV, so it also runs in the second environment (`.venv-models`)."""
