"""A Kokoro model directory with random weights: ``config.json``, a ``.pth`` and a few voices.

Kokoro's decoder fixes its channel widths (hidden 512, style 128, generator 512), so only the
PL-BERT, the layer counts and the generator's kernels are shrunk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_KOKORO_VOICES = ("af_heart", "af_alloy", "bf_emma", "ef_dora", "zf_xiaobei", "jf_alpha")
PHONEMES = (  # Kokoro's IPA symbols
    ';:,.!?—…"()“” ʣʥʦʨᵝꭧAIOQSTWYᵊabcdefhijklmnopqrstuvwxyzɑɐɒæβɔɕçɖðʤəɚɛɜɟɡɥɨɪʝɯɰŋɳɲɴøɸθœɹɾɻʁɽ'  # noqa: RUF001
    "ʂʃʈʧʊʋʌɣɤχʎʒʔˈˌːʰʲ↓→↗↘ᵻ"
)


def tiny_kokoro_config() -> dict[str, object]:
    """A Kokoro ``config.json`` with the real phoneme vocabulary and a 16-unit PL-BERT."""
    vocab = {p: i + 1 for i, p in enumerate(dict.fromkeys(PHONEMES))}
    return {
        "vocab": vocab,
        "n_token": len(vocab) + 1,
        "plbert": {
            "hidden_size": 16,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "max_position_embeddings": 512,
            "num_hidden_layers": 1,
            "dropout": 0.0,
        },
        "hidden_dim": 512,
        "style_dim": 128,
        "n_layer": 1,
        "max_dur": 2,
        "dropout": 0.0,
        "text_encoder_kernel_size": 3,
        "n_mels": 80,
        "istftnet": {
            "upsample_kernel_sizes": [20, 12],
            "upsample_rates": [10, 6],
            "gen_istft_hop_size": 5,
            "gen_istft_n_fft": 20,
            "resblock_dilation_sizes": [[1, 3, 5]],
            "resblock_kernel_sizes": [3],
            "upsample_initial_channel": 512,
        },
    }


def _half(state: dict[str, Any]) -> dict[str, Any]:
    """Float tensors stored as float16 (half the file; loading casts them back)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def build_tiny_kokoro(directory: Path, *, seed: int = 0) -> Path:
    """Save ``config.json``, ``kokoro-v1_0.pth`` (random weights) and ``voices/*.pt``."""
    import torch
    from kokoro import KModel

    directory.mkdir(parents=True, exist_ok=True)
    config = tiny_kokoro_config()
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    torch.manual_seed(seed)
    empty = directory / "empty.pth"
    torch.save({}, empty)
    model = KModel(repo_id="tiny/kokoro", config=config, model=str(empty))
    empty.unlink()
    parts = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
    torch.save(
        {name: _half(getattr(model, name).state_dict()) for name in parts},
        directory / "kokoro-v1_0.pth",
    )
    voices = directory / "voices"
    voices.mkdir(exist_ok=True)
    for name in TINY_KOKORO_VOICES:
        torch.save(torch.randn(510, 1, 256) * 0.1, voices / f"{name}.pt")
    return directory
