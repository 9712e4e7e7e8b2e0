"""A tiny random-weight SAM 2 in the native transformers format, built offline.

A four-stage Hiera backbone (one block each) for 64x64 inputs, an FPN and a mask decoder of
hidden size 16, saved like the hub's SAM 2 checkpoints (a ``sam2_video`` config, which the
mask-generation ``Sam2Model`` loads) with a ``preprocessor_config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

IMAGE_SIZE = 64


def tiny_sam2_config_kwargs() -> dict[str, Any]:
    """The sub-configs shared by the image and the video variants."""
    hidden = 16
    backbone = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": 8,
        "image_size": [IMAGE_SIZE, IMAGE_SIZE],
        "blocks_per_stage": [1, 1, 2, 1],
        "embed_dim_per_stage": [8, 16, 32, 64],
        "num_attention_heads_per_stage": [1, 1, 1, 1],
        "window_size_per_stage": [2, 2, 2, 2],
        "global_attention_blocks": [3],
        "window_positional_embedding_background_size": [2, 2],
    }
    size = IMAGE_SIZE // 4
    vision = {
        "backbone_config": backbone,
        "backbone_channel_list": [64, 32, 16, 8],
        "backbone_feature_sizes": [[size, size], [size // 2, size // 2], [size // 4, size // 4]],
        "fpn_hidden_size": hidden,
    }
    prompt = {"hidden_size": hidden, "image_size": IMAGE_SIZE, "patch_size": 16}
    decoder = {
        "hidden_size": hidden,
        "mlp_dim": 32,
        "num_attention_heads": 2,
        "iou_head_hidden_dim": 16,
    }
    return {
        "vision_config": vision,
        "prompt_encoder_config": prompt,
        "mask_decoder_config": decoder,
    }


def build_tiny_sam2(directory: Path, *, seed: int = 0) -> Path:
    """Save a tiny SAM 2 checkpoint and its image preprocessing config."""
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel

    config = Sam2VideoConfig(
        **tiny_sam2_config_kwargs(),
        image_size=IMAGE_SIZE,
        memory_attention_hidden_size=16,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=32,
        memory_attention_rope_feat_sizes=[IMAGE_SIZE // 16, IMAGE_SIZE // 16],
        memory_encoder_hidden_size=16,
        memory_encoder_output_channels=8,
        mask_downsampler_embed_dim=16,
        memory_fuser_embed_dim=16,
        memory_fuser_intermediate_dim=32,
    )
    torch.manual_seed(seed)
    model = Sam2VideoModel(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    preprocessor = {
        "image_processor_type": "Sam2ImageProcessorFast",
        "do_resize": True,
        "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "do_convert_rgb": True,
        "mask_size": {"height": IMAGE_SIZE // 4, "width": IMAGE_SIZE // 4},
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    (directory / "processor_config.json").write_text(
        json.dumps({"processor_class": "Sam2VideoProcessor", "target_size": IMAGE_SIZE})
    )
    return directory
