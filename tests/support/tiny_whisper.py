"""Tiny random-weight Whisper and WavLM x-vector models, built offline in code.

The Whisper tokenizer keeps the real multilingual layout (50,257 byte-level BPE ids, then
``<|endoftext|>``, ``<|startoftranscript|>``, 99 language tokens, the task tokens and
``<|notimestamps|>``; 1,501 timestamp ids above them, vocabulary 51,865), so that every runtime
treats it as a multilingual Whisper: a small BPE is trained on a few sentences and the rest of
the ids are filled with short made-up words.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.tiny_models import CORPUS, byte_level_bpe

BPE_SIZE = 50_257
VOCAB_SIZE = 51_865
LANGUAGE_COUNT = 99
TASK_TOKENS = [
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]


def _bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    import json

    model = json.loads(byte_level_bpe(CORPUS, 400).to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    filler = 0
    while len(vocab) < BPE_SIZE - 1:
        token = f"\u0120w{filler}"  # " w<n>": a made-up word that decodes with a leading space
        filler += 1
        if token not in vocab:
            vocab[token] = len(vocab)
    vocab[""] = BPE_SIZE - 1  # as in OpenAI's multilingual vocabulary, where runtimes look for it
    return vocab, merges  # type: ignore[return-value]


def build_tiny_whisper(directory: Path, *, seed: int = 0) -> Path:
    """A WhisperForConditionalGeneration (d_model 16, 2+2 layers) with its processor and a
    generation config carrying languages, tasks and alignment heads."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab, merges = _bpe()
    tokenizer = WhisperTokenizer(vocab=vocab, merges=merges, model_max_length=448)
    languages = [f"<|{code}|>" for code in list(LANGUAGES)[:LANGUAGE_COUNT]]
    specials = ["<|startoftranscript|>", *languages, *TASK_TOKENS]
    tokenizer.add_special_tokens(
        {"additional_special_tokens": specials}, replace_extra_special_tokens=False
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in specials}
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    sot, no_ts = ids["<|startoftranscript|>"], ids["<|notimestamps|>"]
    assert eot == BPE_SIZE and no_ts + 1 + 1501 == VOCAB_SIZE, (eot, no_ts)
    processor = WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer)
    config = WhisperConfig(
        vocab_size=VOCAB_SIZE,
        num_mel_bins=80,
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    space = vocab.get("\u0120")
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=448,
        is_multilingual=True,
        lang_to_id={token: ids[token] for token in languages},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=no_ts,
        prev_sot_token_id=ids["<|startofprev|>"],
        max_initial_timestamp_index=50,
        suppress_tokens=[],
        begin_suppress_tokens=[t for t in (space, eot) if t is not None],
        alignment_heads=[[1, 0], [1, 1]],
    )
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    processor.feature_extractor.save_pretrained(directory)  # preprocessor_config.json
    return directory


def convert_to_ctranslate2(source: Path, directory: Path) -> Path:
    """The Whisper checkpoint at ``source`` converted by CTranslate2's own converter, with the
    tokenizer and feature-extractor files faster-whisper reads beside it."""
    from ctranslate2.converters import TransformersConverter

    converter = TransformersConverter(
        str(source), copy_files=["tokenizer.json", "preprocessor_config.json"]
    )
    converter.convert(str(directory), quantization="float32", force=True)
    return directory


def build_tiny_xvector(directory: Path, *, seed: int = 0, embedding_dim: int = 24) -> Path:
    """A WavLMForXVector (hidden 16, 2 layers, ``embedding_dim``-dim embeddings; SpeechT5 wants
    512) with its feature extractor."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    config = WavLMConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        num_buckets=32,
        max_bucket_distance=64,
        tdnn_dim=(16, 16),
        tdnn_kernel=(3, 1),
        tdnn_dilation=(1, 1),
        xvector_output_dim=embedding_dim,
        vocab_size=8,
    )
    torch.manual_seed(seed)
    model = WavLMForXVector(config)
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16_000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    extractor.save_pretrained(directory)
    return directory
