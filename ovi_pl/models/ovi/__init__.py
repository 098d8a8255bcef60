"""The Ovi twin-tower audio-video DiT: configs, model, freezing presets, checkpoint adapters."""

from ovi_pl.models.ovi.config import MODEL_CONFIGS, FusionConfig, TowerConfig, get_model_config
from ovi_pl.models.ovi.freezing import FREEZE_PRESETS, apply_freeze_preset
from ovi_pl.models.ovi.fusion import OviFusionModel
from ovi_pl.models.ovi.state_dict_adapter import (
    load_audio_tower,
    load_ovi_checkpoint,
    load_wan22_video_tower,
    save_ovi_checkpoint,
    save_tower,
)
from ovi_pl.models.ovi.tower import DiTTower

__all__ = [
    "FREEZE_PRESETS",
    "MODEL_CONFIGS",
    "DiTTower",
    "FusionConfig",
    "OviFusionModel",
    "TowerConfig",
    "apply_freeze_preset",
    "get_model_config",
    "load_audio_tower",
    "load_ovi_checkpoint",
    "load_wan22_video_tower",
    "save_ovi_checkpoint",
    "save_tower",
]
