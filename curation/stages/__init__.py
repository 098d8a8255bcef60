"""Curation stages, one small class a module; `curation.pipeline.build_stages` puts them in order."""
from .aesthetic import AestheticFilterStage
from .area import AreaFilterStage
from .discover import DiscoverInputs, read_manifest
from .motion import MotionFilterStage
from .package import PackageSamples
from .probe import ProbeInputs
from .scenes import CutClips
from .transcode import TranscodeClips
from .volume import VolumeFilterStage

__all__ = ["AestheticFilterStage", "AreaFilterStage", "CutClips", "DiscoverInputs", "MotionFilterStage",
           "PackageSamples", "ProbeInputs", "TranscodeClips", "VolumeFilterStage", "read_manifest"]
