"""Tiny random-weight image diffusion models built offline, saved as ordinary diffusers
directories (``model_index.json`` plus one folder per component), the way diffusers' own tests
size them: SDXL, FLUX.1 (text-to-image and Fill), SD3, SD image variations, an SDXL ControlNet,
an SDXL-Lightning-style UNet file and an IP-Adapter weight file. CLIP tokenizers are byte
characters with no merges; T5 tokenizers a fixed list of pieces. Each builds in about a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WORDS = [
    "a",
    "cat",
    "dog",
    "fox",
    "photo",
    "of",
    "red",
    "blue",
    "green",
    "sky",
    "city",
    "night",
    "portrait",
    "person",
    "in",
    "the",
    "style",
]


def _diffusers() -> Any:
    import diffusers

    return diffusers


def clip_tokenizer() -> Any:
    """A CLIP BPE tokenizer over the 256 byte characters with no merges."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = [*alphabet, *(f"{c}</w>" for c in alphabet), "<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=77)


def t5_tokenizer() -> Any:
    """A T5 Unigram tokenizer whose vocabulary is a fixed list of pieces."""
    from transformers import T5Tokenizer

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{w}", -5.0) for w in WORDS]
    pieces += [(c, -10.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=77)


def _clip_text(tokenizer: Any, *, projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        projection_dim=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=77,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _t5(tokenizer: Any) -> Any:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        is_encoder_decoder=False,
    )
    return T5EncoderModel(config)


def _vae(latent_channels: int = 4, **extra: Any) -> Any:
    d = _diffusers()

    return d.AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=latent_channels,
        norm_num_groups=32,
        sample_size=32,
        **extra,
    )


def sdxl_unet(in_channels: int = 4) -> Any:
    """The UNet of the tiny SDXL (two CLIP encoders of width 32, pooled projection 32)."""
    d = _diffusers()

    return d.UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=1,
    )


def build_tiny_sdxl(directory: Path, *, seed: int = 0, inpaint: bool = False) -> Path:
    """A ``StableDiffusionXLPipeline`` directory (or an inpainting one with a 9-channel UNet)."""
    import torch

    d = _diffusers()

    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    cls = d.StableDiffusionXLInpaintPipeline if inpaint else d.StableDiffusionXLPipeline
    pipe = cls(
        vae=_vae(),
        text_encoder=_clip_text(tokenizer, projection=False),
        text_encoder_2=_clip_text(tokenizer, projection=True),
        tokenizer=tokenizer,
        tokenizer_2=clip_tokenizer(),
        unet=sdxl_unet(9 if inpaint else 4),
        scheduler=d.EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        ),
    )
    pipe.save_pretrained(directory)
    return directory


def build_tiny_lightning(directory: Path, *, seed: int = 1) -> Path:
    """A repository holding only a full SDXL UNet state dict, like ``ByteDance/SDXL-Lightning``."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in sdxl_unet().state_dict().items()}
    save_file(state, str(directory / "tiny_lightning_unet.safetensors"))
    return directory


def build_tiny_sdxl_controlnet(directory: Path, *, seed: int = 0) -> Path:
    """A ``ControlNetModel`` matching the tiny SDXL UNet, with its zero-initialised output
    convolutions given random weights so that the control image changes the result."""
    import torch

    d = _diffusers()
    torch.manual_seed(seed)
    controlnet = d.ControlNetModel.from_unet(
        sdxl_unet(), conditioning_embedding_out_channels=(16, 32)
    )
    with torch.no_grad():
        for name, param in controlnet.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")) or (
                name.startswith("controlnet_cond_embedding.conv_out")
            ):
                param.copy_(torch.randn_like(param) * 0.2)
    controlnet.save_pretrained(directory)
    return directory


def _flux_transformer(in_channels: int, out_channels: int) -> Any:
    d = _diffusers()

    return d.FluxTransformer2DModel(
        patch_size=1,
        in_channels=in_channels,
        out_channels=out_channels,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    )


def build_tiny_flux(directory: Path, *, seed: int = 0, fill: bool = False) -> Path:
    """A ``FluxPipeline`` directory (or ``FluxFillPipeline``: image and mask channels added)."""
    import torch

    d = _diffusers()

    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    latent = 4
    vae = _vae(
        latent,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.06,
        scaling_factor=0.4,
    )
    # latents are packed 2x2; Fill adds the packed masked image and the packed mask, whose
    # channels are the VAE's downscale squared (2 * 2 here)
    in_channels = latent * 4 * 2 + 4 * 2 * 2 if fill else latent * 4
    cls = d.FluxFillPipeline if fill else d.FluxPipeline
    pipe = cls(
        scheduler=d.FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_clip_text(tokenizer, projection=False),
        tokenizer=tokenizer,
        text_encoder_2=_t5(tokenizer_2),
        tokenizer_2=tokenizer_2,
        transformer=_flux_transformer(in_channels, latent * 4),
    )
    pipe.save_pretrained(directory)
    return directory


def build_tiny_sd3(directory: Path, *, seed: int = 0) -> Path:
    """A ``StableDiffusion3Pipeline`` directory (two CLIP encoders, a T5, an MMDiT)."""
    import torch

    d = _diffusers()

    torch.manual_seed(seed)
    tokenizer_3 = t5_tokenizer()
    pipe = d.StableDiffusion3Pipeline(
        scheduler=d.FlowMatchEulerDiscreteScheduler(),
        vae=_vae(
            4,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.06,
            scaling_factor=0.4,
        ),
        text_encoder=_clip_text(clip_tokenizer(), projection=True),
        tokenizer=clip_tokenizer(),
        text_encoder_2=_clip_text(clip_tokenizer(), projection=True),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=_t5(tokenizer_3),
        tokenizer_3=tokenizer_3,
        transformer=d.SD3Transformer2DModel(
            sample_size=16,
            patch_size=1,
            in_channels=4,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=32,
            pooled_projection_dim=64,
            out_channels=4,
        ),
    )
    pipe.save_pretrained(directory)
    return directory


def clip_vision_encoder(projection_dim: int = 32, image_size: int = 32, patch_size: int = 4) -> Any:
    """A CLIP vision encoder with projection (hidden 32, 2 layers) for ``image_size`` inputs."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=32,
        projection_dim=projection_dim,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=image_size,
        patch_size=patch_size,
    )
    return CLIPVisionModelWithProjection(config)


def _clip_image_processor() -> Any:
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(crop_size={"height": 32, "width": 32}, size={"shortest_edge": 32})


def build_tiny_image_variation(directory: Path, *, seed: int = 0) -> Path:
    """A ``StableDiffusionImageVariationPipeline`` directory (CLIP image embedding as context)."""
    import torch

    d = _diffusers()

    torch.manual_seed(seed)
    unet = d.UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=1,
    )
    pipe = d.StableDiffusionImageVariationPipeline(
        vae=_vae(),
        image_encoder=clip_vision_encoder(32),
        unet=unet,
        scheduler=d.PNDMScheduler(skip_prk_steps=True),
        safety_checker=None,
        feature_extractor=_clip_image_processor(),
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory)
    return directory


def build_tiny_ip_adapter(directory: Path, *, seed: int = 0) -> Path:
    """An IP-Adapter repository for the tiny SDXL, laid out like ``h94/IP-Adapter``:
    ``sdxl_models/tiny_ip_adapter.safetensors`` (``image_proj`` + ``ip_adapter`` weights) and
    ``sdxl_models/image_encoder`` (a CLIP vision encoder with projection)."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    unet = sdxl_unet()
    cross, embed, tokens = unet.config.cross_attention_dim, 32, 4
    state: dict[str, torch.Tensor] = {
        "image_proj.proj.weight": torch.randn(cross * tokens, embed) * 0.02,
        "image_proj.proj.bias": torch.zeros(cross * tokens),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        state[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.02
        state[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.02
        key_id += 2
    models = directory / "sdxl_models"
    models.mkdir(parents=True, exist_ok=True)
    save_file(state, str(models / "tiny_ip_adapter.safetensors"))
    clip_vision_encoder(embed).save_pretrained(models / "image_encoder")
    _clip_image_processor().save_pretrained(models / "image_encoder")
    return directory


def build_tiny_depth_estimator(directory: Path, *, seed: int = 0) -> Path:
    """A DPT depth-estimation model (hidden 32, 4 layers) with its image processor at 32x32,
    loadable through ``AutoModelForDepthEstimation`` like Depth Anything V2."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(seed)
    config = DPTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[16, 16, 32, 32],
        fusion_hidden_size=16,
        reassemble_factors=[4, 2, 1, 0.5],
    )
    DPTForDepthEstimation(config).save_pretrained(directory)
    processor = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False)
    processor.save_pretrained(directory)
    return directory
