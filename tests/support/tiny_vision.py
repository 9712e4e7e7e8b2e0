"""Tiny random-weight vision models (BLIP, CLIP, LLaVA) saved as ordinary model directories.

Tokenizers are built in code; image processors are the PIL ("slow") classes at 32x32, so
nothing here needs torchvision. Each builder runs in well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.tiny_models import CORPUS, bert_tokenizer

IMAGE_SIZE = 32
PATCH_SIZE = 8
VISION_TOWER: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": IMAGE_SIZE,
    "patch_size": PATCH_SIZE,
}
"""The BLIP and CLIP vision towers (hidden 32, 2 layers, 8x8 patches over 32x32 images)."""

VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def build_tiny_blip(directory: Path, *, seed: int = 0) -> Path:
    """A BLIP captioner: ViT (hidden 32, 2 layers, 8x8 patches) + BERT-like decoder (hidden 32)."""
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    tokenizer = bert_tokenizer([*CORPUS, "a photograph of a picture of an image"])
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "encoder_hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "bos_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.sep_token_id,
    }
    vision_config = {**VISION_TOWER, "projection_dim": 32}
    config = BlipConfig(text_config=text_config, vision_config=vision_config, projection_dim=32)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config)
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size=size), tokenizer=tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def _clip_tokenizer() -> Any:
    """A CLIP BPE tokenizer over byte characters with no merges (each character a token)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab_list = [*alphabet, *(f"{c}</w>" for c in alphabet), "<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(vocab_list)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def clip_image_processor() -> Any:
    """A PIL CLIP image processor resizing and centre-cropping to 32x32."""
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )


def build_tiny_clip(directory: Path, *, seed: int = 0) -> Path:
    """A CLIP model (text and vision hidden 32, 2 layers, projection 16) with its processor."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _clip_tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config=VISION_TOWER,
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    image_processor = clip_image_processor()
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def build_tiny_llava(directory: Path, *, seed: int = 0) -> Path:
    """A LLaVA model: tiny CLIP vision tower + tiny Llama, a processor with ``<image>`` and a
    chat template that takes image parts."""
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from tests.support.tiny_models import build_tiny_llm

    text_dir = build_tiny_llm(directory / "text", seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(text_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    text_config = LlamaConfig.from_pretrained(text_dir)
    text_config.vocab_size = len(tokenizer)
    vision_config = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=16,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=image_token_id,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = clip_image_processor()
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=VLM_CHAT_TEMPLATE,
    )
    out = directory / "model"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


_QUERY_CONFIG_CODE = """
from transformers import PretrainedConfig


class TinyQueryConfig(PretrainedConfig):
    model_type = "tiny-query"

    def __init__(self, hidden=8, **kwargs):
        self.hidden = hidden
        super().__init__(**kwargs)
"""

_QUERY_MODEL_CODE = '''
import torch
from transformers import PreTrainedModel

from .configuration_tiny_query import TinyQueryConfig


class TinyQueryModel(PreTrainedModel):
    """A tiny model with Moondream's query API, in the style of older remote code: a
    non-persistent buffer computed in __init__, and no post_init()."""

    config_class = TinyQueryConfig

    def __init__(self, config):
        super().__init__(config)
        self.image_proj = torch.nn.Linear(3, config.hidden)
        self.embed = torch.nn.Embedding(256, config.hidden)
        self.head = torch.nn.Linear(config.hidden, 26)
        phase = torch.arange(config.hidden, dtype=torch.float32) / config.hidden
        self.register_buffer("phase", phase, persistent=False)

    def query(self, image, question, stream=False, settings=None):
        max_tokens = (settings or {}).get("max_tokens", 8)
        pixels = torch.tensor(list(image.resize((4, 4)).getdata()), dtype=torch.float32) / 255
        ids = torch.tensor(list(question.encode("utf-8")) or [0])
        start = self.image_proj(pixels).mean(0) + self.embed(ids).mean(0) + self.phase

        def pieces():
            state = start
            for _ in range(max_tokens):
                index = int(self.head(state).argmax())
                yield chr(97 + index)
                state = torch.tanh(state + self.embed(torch.tensor(97 + index)))

        return {"answer": pieces() if stream else "".join(pieces())}
'''


def build_tiny_query_model(directory: Path, *, seed: int = 0) -> Path:
    """A remote-code model directory (``auto_map`` + its Python files) with Moondream's
    ``query`` API, loadable only with ``trust_remote_code``."""
    import json

    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "configuration_tiny_query.py").write_text(_QUERY_CONFIG_CODE)
    (directory / "modeling_tiny_query.py").write_text(_QUERY_MODEL_CODE)
    config = {
        "model_type": "tiny-query",
        "hidden": 8,
        "architectures": ["TinyQueryModel"],
        "auto_map": {
            "AutoConfig": "configuration_tiny_query.TinyQueryConfig",
            "AutoModelForCausalLM": "modeling_tiny_query.TinyQueryModel",
        },
    }
    (directory / "config.json").write_text(json.dumps(config))
    loaded = AutoConfig.from_pretrained(directory, trust_remote_code=True, local_files_only=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(loaded, trust_remote_code=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, directory / "model.safetensors"
    )
    return directory
