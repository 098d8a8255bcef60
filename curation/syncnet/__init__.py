"""SyncNet audio-visual sync scoring: our own network (key-compatible with `syncnet_v2.model`), MFCC
front end, face detection/tracking and the offset/confidence rule of syncnet_python (DESIGN.md 3).

syncnet-python itself is not a dependency (its pins clash with the main environment, README
"Environments"); this package re-implements the same computation from its published description.
"""
from .model import SyncNet, load_syncnet
from .score import SyncResult, score_track, sync_scores

__all__ = ["SyncNet", "SyncResult", "load_syncnet", "score_track", "sync_scores"]
