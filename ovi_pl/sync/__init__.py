"""Audio-visual sync judges, shared by the curation filter, training samples and evaluation.

- SyncNet (`model`, `mfcc`, `score`, `clip`): our own network, key-compatible with the released
  `syncnet_v2.model`, with syncnet_python's MFCC front end and offset/confidence rule (DESIGN.md 3).
  syncnet-python itself is not a dependency (its pins clash with the main environment, README
  "Environments"); this package re-implements the same computation from its published description.
- Faces (`faces`, `s3fd`, `video`): detectors behind one interface, IoU tracking and face crops.

Modules import their heavy libraries themselves, so importing this package costs nothing.
"""
