"""Scoring generated clips: Sync-C/D through a pluggable SyncNet scorer, CLIP text-video and CLAP
audio-text similarity, logged to MLflow."""

from ovi_pl.evaluation.evaluate import ClipRecord, evaluate_clips, log_to_mlflow, read_clip_folder, summarize
from ovi_pl.evaluation.sync import SyncScore, SyncScorer, load_sync_scorer
from ovi_pl.evaluation.texts import audio_text, visual_text

__all__ = [
    "ClipRecord",
    "SyncScore",
    "SyncScorer",
    "audio_text",
    "evaluate_clips",
    "load_sync_scorer",
    "log_to_mlflow",
    "read_clip_folder",
    "summarize",
    "visual_text",
]
