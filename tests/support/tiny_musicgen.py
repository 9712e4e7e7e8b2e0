"""A MusicGen model directory with random weights: a tiny T5 text encoder with a sentencepiece
tokenizer trained in code, a tiny EnCodec (16 kHz, 50 frames a second, 2 codebooks of 64) and a
one-layer decoder."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.support.tiny_bark import tiny_encodec_config

SENTENCES = [
    "lo-fi hip hop beat with warm piano",
    "an upbeat electronic dance track with heavy bass",
    "calm acoustic guitar melody for a rainy day",
    "epic orchestral music with drums and strings",
    "a jazz trio with brushed drums and walking bass",
]
TINY_MUSICGEN_RATE = 16_000
TINY_MUSICGEN_FRAME_RATE = 50


def train_sentencepiece(
    directory: Path, sentences: list[str], vocab_size: int, **extra: object
) -> Path:
    """Train a sentencepiece model on ``sentences``; returns the ``.model`` path."""
    import sentencepiece as spm

    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(sentences * 4) + "\n", encoding="utf-8")
    prefix = directory / "spm"
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        minloglevel=2,
        **{"pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1, **extra},
    )
    return prefix.with_suffix(".model")


def build_tiny_musicgen(directory: Path, *, seed: int = 0) -> Path:
    """Save model and processor (``MusicgenProcessor``: T5 tokenizer + EnCodec features)."""
    import sentencepiece as spm
    import torch
    from transformers import (
        EncodecConfig,
        EncodecFeatureExtractor,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenProcessor,
        T5Config,
        T5Tokenizer,
    )

    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as raw:
        model_file = train_sentencepiece(Path(raw), SENTENCES, 48, hard_vocab_limit=False)
        pieces = spm.SentencePieceProcessor(model_file=str(model_file))
        vocab = [(pieces.id_to_piece(i), pieces.get_score(i)) for i in range(len(pieces))]
        tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    text = T5Config(
        vocab_size=len(tokenizer),
        d_model=8,
        d_kv=4,
        d_ff=16,
        num_layers=1,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    audio = EncodecConfig(
        **tiny_encodec_config(TINY_MUSICGEN_RATE, 64, [8, 5, 4, 2]), target_bandwidths=[0.6]
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=64,
        max_position_embeddings=256,
        num_hidden_layers=1,
        ffn_dim=16,
        num_attention_heads=2,
        hidden_size=8,
        num_codebooks=2,
        pad_token_id=64,
        bos_token_id=64,
        audio_channels=1,
    )
    config = MusicgenConfig(
        text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict()
    )
    torch.manual_seed(seed)
    model = MusicgenForConditionalGeneration(config)
    model.generation_config.decoder_start_token_id = 64
    model.generation_config.pad_token_id = 64
    model.generation_config.max_length = 256
    model.save_pretrained(directory)
    features = EncodecFeatureExtractor(feature_size=1, sampling_rate=TINY_MUSICGEN_RATE)
    MusicgenProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(directory)
    return directory
