"""Tiny random-weight video diffusion pipelines built offline, saved as ordinary diffusers
directories (``model_index.json`` plus one folder per component).

LTX-Video and Wan 2.1 get a T5 text encoder with hidden size 32 and a Unigram T5 tokenizer built
from a list of pieces; Stable Video Diffusion gets a CLIP vision encoder with hidden size 32.
Each builds and saves in about a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.tiny_diffusion import clip_vision_encoder

TEXT_DIM = 32

WORDS = [
    *("a", "cat", "dog", "fox", "runs", "jumps", "over", "the", "lazy", "sky", "sea", "city"),
    *("night", "day", "slow", "motion", "camera", "pans", "red", "blue", "green", "light"),
    *("of", "in", "on", "at", "with", "and", "video", "frame", "sunset", "forest", "river"),
]


def build_t5_tokenizer(*, model_max_length: int = 64) -> Any:
    """A T5 Unigram tokenizer whose vocabulary is a fixed list of pieces (words and letters)."""
    from transformers import T5Tokenizer

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{word}", -5.0) for word in WORDS]
    pieces += [(letter, -10.0) for letter in "abcdefghijklmnopqrstuvwxyz"]
    pieces += [(f"▁{letter}", -9.0) for letter in "abcdefghijklmnopqrstuvwxyz"]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def _t5_encoder(vocab_size: int, *, umt5: bool = False) -> Any:
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    settings: dict[str, Any] = {
        "vocab_size": vocab_size,
        "d_model": TEXT_DIM,
        "d_kv": 8,
        "d_ff": 37,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
        "is_encoder_decoder": False,
    }
    if umt5:
        return UMT5EncoderModel(UMT5Config(**settings))
    return T5EncoderModel(T5Config(**settings))


def build_tiny_ltx(directory: Path, *, seed: int = 0) -> Path:
    """An LTX-Video pipeline: a 1-layer transformer (8 latent channels), a VAE with 8 channels
    that compresses 4x in space and time (encoder and decoder sizes both given), a tiny T5."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=TEXT_DIM,
    )
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    tokenizer = build_t5_tokenizer()
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_t5_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        transformer=transformer,
    )
    directory.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(directory)
    return directory


def build_tiny_wan(directory: Path, *, seed: int = 0) -> Path:
    """A Wan 2.1 text-to-video pipeline: a 2-layer transformer, a VAE of base width 3 that
    compresses 8x in space and 4x in time, a tiny UMT5 encoder."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    tokenizer = build_t5_tokenizer()
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=_t5_encoder(len(tokenizer), umt5=True),
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        transformer=transformer,
    )
    directory.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(directory)
    return directory


def build_tiny_svd(directory: Path, *, seed: int = 0) -> Path:
    """A Stable Video Diffusion pipeline: a 2-level spatio-temporal UNet, a temporal-decoder
    VAE (2x compression), a CLIP vision encoder with projection (hidden 32; the pipeline
    always feeds it 224x224 images, read in 32-pixel patches)."""
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor

    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=(2, 4),
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        latent_channels=4,
    )
    image_encoder = clip_vision_encoder(32, image_size=224, patch_size=32)
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )
    directory.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(directory)
    return directory
