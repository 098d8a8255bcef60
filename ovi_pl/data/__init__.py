"""Training data from WebDataset shards (see datamodule.py), and the pieces the latent curation stage shares."""
from .datamodule import SKIPPED_METRIC, ShardDataModule
from .encoding import EncoderPaths, Encoders
from data_specs.geometry import DEFAULT_TARGET_AREA, target_size

from .geometry import video_latent_grid
from .samples import AUDIO_MEMBER, TEXT_MEMBER, VIDEO_MEMBER, SampleConfig
from .stream import ShardBatchStream
from .urls import expand_shard_urls, open_shard

__all__ = [
    "AUDIO_MEMBER", "DEFAULT_TARGET_AREA", "SKIPPED_METRIC", "TEXT_MEMBER", "VIDEO_MEMBER",
    "EncoderPaths", "Encoders", "SampleConfig", "ShardBatchStream", "ShardDataModule",
    "expand_shard_urls", "open_shard", "target_size", "video_latent_grid",
]
