"""Tiny random-weight imaging models built offline: ONNX segmentation networks shaped like
BiRefNet / RMBG 2.0 exports, and Swin2SR super-resolution checkpoints."""

from __future__ import annotations

from pathlib import Path

TINY_SEGMENTER_SIZE = 32


def build_tiny_segmenter(
    directory: Path,
    *,
    input_name: str = "input_image",
    output_name: str = "output_image",
    probabilities: bool = False,
    dynamic: bool = False,
    seed: int = 0,
) -> Path:
    """An ONNX net (two 3x3 convolutions) mapping ``[1, 3, S, S]`` to a ``[1, 1, S, S]`` map,
    saved as ``<directory>/onnx/model.onnx``: logits like BiRefNet's export, or probabilities
    (a final sigmoid) like RMBG 2.0's. ``dynamic`` leaves the spatial size open."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    size: int | str = TINY_SEGMENTER_SIZE
    height: int | str = "height" if dynamic else size
    width: int | str = "width" if dynamic else size
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(np.zeros(4, np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.5, (1, 4, 3, 3)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(np.zeros(1, np.float32), "b2")
    last = "probs" if probabilities else output_name
    nodes = [
        helper.make_node("Conv", [input_name, "w1", "b1"], ["h1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("Conv", ["a1", "w2", "b2"], [last], pads=[1, 1, 1, 1]),
    ]
    if probabilities:
        nodes.append(helper.make_node("Sigmoid", [last], [output_name]))
    graph = helper.make_graph(
        nodes,
        "tiny_segmenter",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, 1, height, width])],
        initializer=[w1, b1, w2, b2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    (directory / "onnx").mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(directory / "onnx" / "model.onnx"))
    return directory


def build_tiny_swin2sr(directory: Path, *, upscale: int = 2, seed: int = 0) -> Path:
    """A Swin2SR super-resolution checkpoint (embed 8, one stage of one block, window 4)."""
    import torch
    from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution

    config = Swin2SRConfig(
        image_size=16,
        embed_dim=8,
        depths=[1],
        num_heads=[1],
        window_size=4,
        mlp_ratio=1.0,
        upscale=upscale,
        upsampler="pixelshuffle",
        drop_path_rate=0.0,
    )
    torch.manual_seed(seed)
    model = Swin2SRForImageSuperResolution(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    return directory


FFHQ_FIVE_POINTS = (
    (0.37691676, 0.46864664),
    (0.62285697, 0.46912813),
    (0.50123859, 0.61331904),
    (0.39308822, 0.72541100),
    (0.61150205, 0.72490465),
)
"""Eyes, nose tip and mouth corners of an aligned face, as fractions of its square crop."""


def build_tiny_face_detector(path: Path) -> Path:
    """A YuNet-format face detector (input ``input`` ``[1, 3, H, W]`` in BGR 0-255; outputs
    ``cls|obj|bbox|kps_{8,16,32}``, as OpenCV's ``FaceDetectorYN`` reads them) with set
    weights: every bright 32x32 cell of the stride-32 grid is a face filling that cell, with
    its landmarks where an aligned face has them; nothing else is."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    outputs: list[onnx.ValueInfoProto] = []
    heads = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
    for stride in (8, 16, 32):
        pooled = f"pool_{stride}"
        nodes.append(
            helper.make_node(
                "AveragePool",
                ["input"],
                [pooled],
                kernel_shape=[stride, stride],
                strides=[stride, stride],
            )
        )
        for head, channels in heads.items():
            weight = np.zeros((channels, 3, 1, 1), np.float32)
            bias = np.zeros(channels, np.float32)
            if head in ("cls", "obj"):
                if stride == 32:
                    weight[:] = 0.1
                    bias[:] = -40.0
                else:
                    bias[:] = -30.0
            elif head == "bbox":
                bias[:] = [0.5, 0.5, 0.0, 0.0]
            else:
                bias[:] = [v for point in FFHQ_FIVE_POINTS for v in point]
            name = f"{head}_{stride}"
            inits += [
                numpy_helper.from_array(weight, f"w_{name}"),
                numpy_helper.from_array(bias, f"b_{name}"),
            ]
            conv = f"conv_{name}"
            nodes.append(helper.make_node("Conv", [pooled, f"w_{name}", f"b_{name}"], [conv]))
            nodes.append(helper.make_node("Transpose", [conv], [f"t_{name}"], perm=[0, 2, 3, 1]))
            shape = f"shape_{name}"
            inits.append(numpy_helper.from_array(np.array([1, -1, channels], np.int64), shape))
            reshaped = f"r_{name}" if head in ("cls", "obj") else name
            nodes.append(helper.make_node("Reshape", [f"t_{name}", shape], [reshaped]))
            if head in ("cls", "obj"):
                nodes.append(helper.make_node("Sigmoid", [reshaped], [name]))
            outputs.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, None, channels])
            )
    graph = helper.make_graph(
        nodes,
        "tiny_yunet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, None, None])],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


TINY_FACE_SIZE = 32


def build_tiny_face_restorer(path: Path, *, fidelity_input: bool = True, seed: int = 0) -> Path:
    """A face restoration net in the layout of the CodeFormer / GFPGAN ONNX exports: ``input``
    ``[1, 3, S, S]`` in [-1, 1] to ``output`` of the same shape, plus CodeFormer's ``weight``
    (a double, the fidelity) when ``fidelity_input``: ``tanh(input + weight * conv(input))``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    size = TINY_FACE_SIZE
    weight = rng.normal(0, 0.3, (3, 3, 3, 3)).astype(np.float32)
    inits = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(np.zeros(3, np.float32), "b"),
    ]
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["delta"], pads=[1, 1, 1, 1])]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])]
    if fidelity_input:
        inputs.append(helper.make_tensor_value_info("weight", TensorProto.DOUBLE, [1]))
        nodes += [
            helper.make_node("Cast", ["weight"], ["w32"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["delta", "w32"], ["scaled"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["delta"], ["scaled"]))
    nodes += [
        helper.make_node("Add", ["input", "scaled"], ["sum"]),
        helper.make_node("Tanh", ["sum"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_face_restorer",
        inputs,
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, size, size])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def face_png(width: int = 96, height: int = 64) -> bytes:
    """A dark picture with one bright 32x32 cell, which the tiny detector takes for a face."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (20, 30, 40))
    ImageDraw.Draw(image).rectangle((32, 32, 63, 63), fill=(250, 240, 230))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
