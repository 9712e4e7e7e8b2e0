"""Stickers: the input image redrawn in a sticker style (image-to-image with a sticker prompt and
optionally a sticker LoRA), its background removed by a segmentation network, and a white
die-cut outline drawn around the subject; the result keeps a transparent background.

Model options: those of ``diffusers-img2img`` and ``diffusers-text-to-image`` (``base_model``,
``lora_file``, ``strength`` (default 0.75)...), ``max_side`` (the input is shrunk to fit it,
default 1024), ``trigger_words`` (put before the prompt), ``style_prompt``
(put after it), ``outline_ratio`` (outline width as a share of the shorter side),
``background_removal`` / ``background_removal_options`` (the segmentation model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
)
from gpubridge.engines.diffusion.generation import (
    Generation,
    images_result,
    input_image,
    snap_size,
)
from gpubridge.engines.diffusion.img2img import Img2ImgEngine, read_strength
from gpubridge.engines.diffusion.text_to_image import load_text_to_image
from gpubridge.engines.imaging.background_removal import (
    Segmenter,
    predict_alpha,
    removal_model,
    remover_for,
)
from gpubridge.engines.local import threadsafe_emit

if TYPE_CHECKING:
    from PIL import Image

    from gpubridge.engines.base import ModelRef

STYLE = (
    "die-cut sticker, bold outlines, flat vibrant colours, vector illustration, plain background"
)
NEGATIVE = "photo, photorealistic, blurry, noisy, text, watermark, frame, cropped"


def sticker_prompt(prompt: str, options: dict[str, Any]) -> str:
    """``prompt`` between the model's trigger words and the sticker style terms."""
    parts = [
        str(options.get("trigger_words") or ""),
        prompt,
        str(options.get("style_prompt", STYLE)),
    ]
    return ", ".join(p for p in parts if p)


def outline(image: Image.Image, mask: Image.Image, ratio: float = 0.02) -> Image.Image:
    """The subject of ``image`` (alpha ``mask``) on a white border: the mask dilated by
    ``ratio`` of the shorter side, as an RGBA image with a transparent background."""
    from PIL import Image, ImageFilter

    width = max(1, round(min(image.size) * ratio))
    border = mask.point(lambda v: 255 if v >= 128 else 0)
    for _ in range(width):
        border = border.filter(ImageFilter.MaxFilter(3))
    border = border.filter(ImageFilter.GaussianBlur(0.6))
    sticker = Image.new("RGBA", image.size, (255, 255, 255, 0))
    sticker.putalpha(border)
    subject = image.convert("RGB").copy()
    subject.putalpha(mask)
    sticker.alpha_composite(subject)
    return sticker


class StickerEngine(Img2ImgEngine):
    """An ``Engine`` making transparent die-cut stickers from ``image_url`` and ``prompt``."""

    default_steps = 25
    default_guidance = 7.0

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context)
        self.remover = remover_for(config, context)

    def build_pipeline(self, model: ModelRef, options: dict[str, Any]) -> Any:
        return load_text_to_image(model, options, self.default_pipeline)

    def pipeline_inputs(
        self, pipe: Any, request: EngineRequest, options: dict[str, Any], gen: Generation
    ) -> dict[str, Any]:
        image = input_image(request)
        fit = min(1.0, int(options.get("max_side", 1024)) / max(image.size))
        width, height = snap_size(round(image.width * fit), round(image.height * fit))
        return {
            "image": image.resize((width, height)),
            "strength": read_strength(request.input, options, 0.75),
            "width": width,
            "height": height,
        }

    def read_generation(self, request: EngineRequest, options: dict[str, Any]) -> Generation:
        gen = super().read_generation(request, options)
        negative = gen.negative_prompt or str(options.get("negative_style", NEGATIVE))
        return Generation(
            prompt=sticker_prompt(gen.prompt, options),
            negative_prompt=negative,
            num_outputs=gen.num_outputs,
            steps=gen.steps,
            guidance_scale=gen.guidance_scale,
            seed=gen.seed,
            output_format=gen.output_format,
            width=gen.width,
            height=gen.height,
        )

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        options = self.options_for(request.model)
        gen = self.read_generation(request, options)
        pipe = await self.pipeline(request.model, emit)
        segmenter: Segmenter = await self.remover.model(removal_model(options), emit)
        send = threadsafe_emit(emit)
        ratio = float(options.get("outline_ratio", 0.02))

        def work() -> list[Image.Image]:
            images = self.generate(pipe, request, options, gen, send)
            return [outline(img, predict_alpha(segmenter, img), ratio) for img in images]

        stickers, seconds = await self.timed(work)
        return images_result(stickers, gen.output_format, gen.seed, seconds)

    async def unload(self) -> None:
        await super().unload()
        await self.remover.unload()


def create(config: BackendConfig, context: EngineContext) -> StickerEngine:
    """The ``sticker`` backend type."""
    return StickerEngine(config, context)
