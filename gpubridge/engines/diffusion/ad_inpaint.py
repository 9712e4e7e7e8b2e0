"""Product ads: the product is cut out of its photo by a segmentation network, scaled to
``product_scale`` of the frame and placed on a canvas, everything around it is painted from
the prompt by an inpainting pipeline, and the product's own pixels are put back on top.

Model options: those of ``diffusers-inpaint``, ``background_removal`` /
``background_removal_options`` (the segmentation model), ``product_position``
(``center`` | ``bottom``), ``canvas_color`` (``#rrggbb`` under the area to paint),
``strength`` (default 1: the scene is painted from noise, whatever the canvas colour).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
)
from gpubridge.engines.diffusion.generation import (
    generate_images,
    images_result,
    input_image,
    snap_size,
)
from gpubridge.engines.diffusion.inpaint import InpaintEngine
from gpubridge.engines.imaging.background_removal import (
    Segmenter,
    parse_color,
    predict_alpha,
    removal_model,
    remover_for,
)
from gpubridge.engines.local import threadsafe_emit
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class Layout:
    """The product placed on the canvas: its pixels, its alpha, and where it goes."""

    canvas: Image.Image
    repaint: Image.Image
    product: Image.Image
    alpha: Image.Image
    position: tuple[int, int]


def place_product(
    image: Image.Image,
    mask: Image.Image,
    size: tuple[int, int],
    scale: float,
    *,
    position: str = "center",
    color: tuple[int, int, int] = (127, 127, 127),
) -> Layout:
    """Cut the product (``mask`` > half) out of ``image``, fit it into ``scale`` of a canvas of
    ``size`` and place it; ``repaint`` is white wherever the product is not."""
    from PIL import Image

    box = mask.point(lambda v: 255 if v >= 128 else 0).getbbox() or (0, 0, *image.size)
    product, alpha = image.crop(box), mask.crop(box)
    width, height = size
    fit = min(width * scale / product.width, height * scale / product.height)
    new_size = (max(1, round(product.width * fit)), max(1, round(product.height * fit)))
    product = product.resize(new_size, Image.Resampling.LANCZOS)
    alpha = alpha.resize(new_size, Image.Resampling.LANCZOS)
    x = (width - new_size[0]) // 2
    y = (height - new_size[1]) // 2 if position == "center" else height - new_size[1] - height // 20
    canvas = Image.new("RGB", size, color)
    canvas.paste(product, (x, max(0, y)), alpha)
    repaint = Image.new("L", size, 255)
    repaint.paste(Image.new("L", new_size, 0), (x, max(0, y)), alpha)
    return Layout(canvas, repaint, product, alpha, (x, max(0, y)))


def composite(painted: Image.Image, layout: Layout) -> Image.Image:
    """``painted`` with the product's original pixels put back over it."""
    result = painted.convert("RGB").resize(layout.canvas.size)
    result.paste(layout.product, layout.position, layout.alpha)
    return result


def read_scale(data: dict[str, Any]) -> float:
    """``product_scale`` in [0.1, 1] (default 0.6)."""
    value = data.get("product_scale", 0.6)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 1:
        raise InvalidInput("product_scale must be a number in [0.1, 1]")
    return float(value)


class AdInpaintEngine(InpaintEngine):
    """An ``Engine`` placing the product of ``image_url`` in a scene painted from ``prompt``."""

    default_steps = 30
    default_guidance = 7.5

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context)
        self.remover = remover_for(config, context)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        options = self.options_for(request.model)
        gen = self.read_generation(request, options)
        scale = read_scale(request.input)
        image = input_image(request)
        color = parse_color(str(options.get("canvas_color", "#7f7f7f")))
        size = snap_size(gen.width or 1024, gen.height or 1024)
        pipe = await self.pipeline(request.model, emit)
        segmenter: Segmenter = await self.remover.model(removal_model(options), emit)
        send = threadsafe_emit(emit)
        position = str(options.get("product_position", "center"))

        def work() -> list[Image.Image]:
            layout = place_product(
                image, predict_alpha(segmenter, image), size, scale, position=position, color=color
            )
            inputs = {
                "image": layout.canvas,
                "mask_image": layout.repaint,
                "width": size[0],
                "height": size[1],
                "strength": float(options.get("strength", 1.0)),
            }
            with self._busy:
                painted = generate_images(pipe, gen, send, **inputs)
            return [composite(img, layout) for img in painted]

        images, seconds = await self.timed(work)
        return images_result(images, gen.output_format, gen.seed, seconds)

    async def unload(self) -> None:
        await super().unload()
        await self.remover.unload()


def create(config: BackendConfig, context: EngineContext) -> AdInpaintEngine:
    """The ``ad-inpaint`` backend type."""
    return AdInpaintEngine(config, context)
