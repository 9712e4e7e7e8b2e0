"""Voice cloning models with random weights: a SpeechT5 TTS (hidden 16) with a character
sentencepiece tokenizer trained in code and a tiny 16 kHz HiFi-GAN vocoder (the x-vector speaker
encoder comes from ``tiny_whisper.build_tiny_xvector``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.support.tiny_musicgen import train_sentencepiece

SENTENCES = [
    "Hello! This is a preview of the cloned voice, reading a short sentence.",
    "The quick brown fox jumps over the lazy dog.",
    "Speak these words in my voice, please.",
    "Numbers like 1 2 3 and letters like x y z and q j k v w.",
]


def build_tiny_speecht5(directory: Path, *, seed: int = 0) -> Path:
    """Save ``SpeechT5ForTextToSpeech`` and its ``SpeechT5Processor``."""
    import torch
    from transformers import (
        SpeechT5Config,
        SpeechT5FeatureExtractor,
        SpeechT5ForTextToSpeech,
        SpeechT5Processor,
        SpeechT5Tokenizer,
    )

    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as raw:
        spm = train_sentencepiece(
            Path(raw),
            SENTENCES,
            60,
            model_type="char",
            bos_id=0,
            pad_id=1,
            eos_id=2,
            unk_id=3,
            hard_vocab_limit=False,
        )
        tokenizer = SpeechT5Tokenizer(str(spm))
        config = SpeechT5Config(
            vocab_size=len(tokenizer),
            hidden_size=16,
            encoder_layers=1,
            encoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=32,
            speech_decoder_prenet_units=16,
            speech_decoder_postnet_units=16,
            speech_decoder_postnet_layers=1,
            speech_decoder_postnet_kernel=3,
            num_mel_bins=8,
            reduction_factor=2,
            speaker_embedding_dim=512,
            max_speech_positions=256,
            max_text_positions=128,
        )
        torch.manual_seed(seed)
        SpeechT5ForTextToSpeech(config).save_pretrained(directory)
        features = SpeechT5FeatureExtractor(num_mel_bins=8)
        SpeechT5Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(
            directory
        )
    return directory


def build_tiny_hifigan(directory: Path, *, seed: int = 0) -> Path:
    """Save a ``SpeechT5HifiGan`` turning 8 mel bins into 16 kHz audio (hop 16)."""
    import torch
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    config = SpeechT5HifiGanConfig(
        model_in_dim=8,
        sampling_rate=16_000,
        upsample_initial_channel=16,
        upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        normalize_before=False,
    )
    torch.manual_seed(seed)
    SpeechT5HifiGan(config).save_pretrained(directory)
    return directory
