"""A Bark model directory with random weights: semantic, coarse and fine GPTs (hidden 8), a
tiny EnCodec, a WordPiece tokenizer built in code and one speaker preset."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

TINY_BARK_PRESET = "v2/en_speaker_0"
WORDS = ["hello", "world", "this", "is", "a", "tiny", "bark", "model", "[", "]", "laughter", "."]


def tiny_encodec_config(
    sampling_rate: int, codebook_size: int, ratios: list[int]
) -> dict[str, object]:
    """An EnCodec config with 4 filters and 8-dimensional codes."""
    return {
        "sampling_rate": sampling_rate,
        "audio_channels": 1,
        "num_filters": 4,
        "hidden_size": 8,
        "codebook_size": codebook_size,
        "codebook_dim": 8,
        "upsampling_ratios": ratios,
        "num_residual_layers": 1,
        "num_lstm_layers": 1,
        "kernel_size": 3,
        "last_kernel_size": 3,
        "residual_kernel_size": 3,
        "compress": 2,
    }


def _gpt(input_vocab: int, output_vocab: int, **extra: int) -> dict[str, int]:
    config = {
        "block_size": 1024,
        "input_vocab_size": input_vocab,
        "output_vocab_size": output_vocab,
        "num_layers": 1,
        "num_heads": 2,
        "hidden_size": 8,
    }
    config.update(extra)
    return config


def build_tiny_bark(directory: Path, *, seed: int = 0, semantic_tokens: int = 6) -> Path:
    """Save the model, processor and a preset; ``semantic_tokens`` caps the first stage."""
    import numpy as np
    import torch
    from transformers import BarkConfig, BarkModel, BarkProcessor, BertTokenizer
    from transformers.models.bark.generation_configuration_bark import BarkGenerationConfig

    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as raw:
        vocab = Path(raw) / "vocab.txt"
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
        tokenizer = BertTokenizer(str(vocab), do_lower_case=True)
    config = BarkConfig(
        semantic_config=_gpt(129_600, 10_048),
        coarse_acoustics_config=_gpt(12_096, 12_096),
        fine_acoustics_config=_gpt(1_056, 1_056, n_codes_total=8, n_codes_given=1),
        codec_config=tiny_encodec_config(24_000, 1024, [8, 5, 4, 2]),
    )
    torch.manual_seed(seed)
    model = BarkModel(config)
    model.save_pretrained(directory)
    generation = BarkGenerationConfig(
        semantic_config={"max_new_tokens": semantic_tokens},
        coarse_acoustics_config={},
        fine_acoustics_config={},
    )
    (directory / "generation_config.json").write_text(json.dumps(generation.to_dict()))
    rng = np.random.default_rng(seed)
    presets = Path(directory) / "speaker_embeddings"
    (presets / "v2").mkdir(parents=True, exist_ok=True)
    np.savez(
        presets / f"{TINY_BARK_PRESET}.npz",
        semantic_prompt=rng.integers(0, 10_000, 12),
        coarse_prompt=rng.integers(0, 1024, (2, 18)),
        fine_prompt=rng.integers(0, 1024, (8, 18)),
    )
    BarkProcessor(tokenizer=tokenizer).save_pretrained(directory)
    return directory
