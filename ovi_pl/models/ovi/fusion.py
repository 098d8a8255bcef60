"""The Ovi fusion model: a video and an audio tower fused block by block.

For each block pair i: audio self-attention, video self-attention; then audio cross-attention
(text + the video state after its self-attention) and audio FFN; then video cross-attention
(text + the audio state after its self-attention, before its cross step) and video FFN. Both
towers see the same timestep unless `audio_t` gives the audio tower its own (the directional
tasks keep one modality clean at t = 0).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ovi_pl.models.ovi.config import FusionConfig
from ovi_pl.models.ovi.layers import FusionSource
from ovi_pl.models.ovi.tower import DiTBlock, DiTTower, TowerState


class OviFusionModel(nn.Module):
    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.video = DiTTower(cfg.video, fusion=True)
        self.audio = DiTTower(cfg.audio, fusion=True)
        # Set by `parallelize`: recompute each block pair in backward instead of storing activations.
        self.activation_checkpointing = False
        self._scale_video_fusion_init()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Reference initialisation of both towers; used after materialising from the meta device."""
        self.video.init_weights()
        self.audio.init_weights()
        self._scale_video_fusion_init()

    def _scale_video_fusion_init(self) -> None:
        # The reference starts the video tower's fusion projections 10x smaller than Xavier, so
        # a pretrained video tower is barely disturbed by untrained audio at the start of fusion.
        with torch.no_grad():
            for block in self.video.blocks:
                block.cross_attn.k_fusion.weight.div_(10.0)
                block.cross_attn.v_fusion.weight.div_(10.0)

    def forward(
        self,
        video: Tensor,
        audio: Tensor,
        t: Tensor,
        video_context: Tensor,
        audio_context: Tensor,
        audio_lengths: Tensor | None = None,
        first_frame_clean: bool = False,
        skip_block: int | None = None,
        audio_t: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Velocity predictions for video [B, 48, F, H, W] and audio [B, L, 20] latents.

        t: [B] model time in [0, 1000] of both towers, or of the video tower when `audio_t` [B]
        gives the audio tower's (video-to-audio: t = 0, audio-to-video: audio_t = 0). Contexts: [B, <=text_len, text_dim] prompt
        embeddings (each modality may get its own, e.g. per-modality negative prompts).
        audio_lengths: true audio latent count per sample in a padded batch; padded keys are
        masked and outputs there are meaningless. first_frame_clean: image-to-video, the first
        video latent frame is clean. skip_block: a block pair to skip (skip-layer guidance).
        """
        video_state = self.video.embed(video, t, video_context, first_frame_clean=first_frame_clean)
        audio_state = self.audio.embed(audio, t if audio_t is None else audio_t, audio_context, lengths=audio_lengths)
        v, a = video_state.tokens, audio_state.tokens
        for i, (video_block, audio_block) in enumerate(zip(self.video.blocks, self.audio.blocks, strict=True)):
            if i == skip_block:
                continue
            args = (video_block, audio_block, v, a, video_state, audio_state)
            if self.activation_checkpointing and torch.is_grad_enabled():
                v, a = checkpoint(fused_block_pair, *args, use_reentrant=False)
            else:
                v, a = fused_block_pair(*args)
        return self.video.unembed(v, video_state), self.audio.unembed(a, audio_state)


def fused_block_pair(
    video_block: DiTBlock,
    audio_block: DiTBlock,
    v: Tensor,
    a: Tensor,
    video_state: TowerState,
    audio_state: TowerState,
) -> tuple[Tensor, Tensor]:
    """One fused step of block i of both towers, in the reference order."""
    video_mod = video_block.modulation(video_state.time_projection)
    audio_mod = audio_block.modulation(audio_state.time_projection)
    a = audio_block.self_attention_step(a, audio_mod, audio_state)
    v = video_block.self_attention_step(v, video_mod, video_state)
    audio_after_self_attn = a
    a = audio_block.cross_attention_ffn_step(a, audio_mod, audio_state, FusionSource(v, video_state.rope))
    v = video_block.cross_attention_ffn_step(
        v, video_mod, video_state, FusionSource(audio_after_self_attn, audio_state.rope)
    )
    return v, a
