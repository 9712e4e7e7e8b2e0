"""Tiny random-weight models built offline, saved as ordinary model directories.

Each builder trains a small tokenizer with the ``tokenizers`` library on a few sentences, builds
a model with random weights around it and ``save_pretrained``s both, in well under a second.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world, this is a tiny model that says random things.",
    "A GPU inference gateway serves many models behind one endpoint.",
    "system user assistant: you are a helpful assistant.",
    "Cats sit on mats; dogs run in parks; markets rise and fall.",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<s>assistant:{% endif %}"
)

TINY_LLM_HIDDEN = 16
TINY_BERT_HIDDEN = 32


def byte_level_bpe(
    corpus: list[str],
    vocab_size: int,
    special_tokens: list[str] | None = None,
    unk_token: str | None = None,
) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` (with its decoder) trained on ``corpus``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE(unk_token=unk_token))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=special_tokens or [],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    return backend


def bert_tokenizer(corpus: list[str] = CORPUS, extra_special: list[str] | None = None) -> Any:
    """A lowercase WordPiece ``BertTokenizerFast`` ([CLS] ... [SEP], 64 tokens at most) trained
    on ``corpus``, with the ``extra_special`` tokens after the usual ones."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(extra_special or [])]
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.train_from_iterator(
        corpus,
        trainers.WordPieceTrainer(vocab_size=240, special_tokens=specials, show_progress=False),
    )
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return BertTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def build_tiny_llm(
    directory: Path,
    *,
    seed: int = 0,
    chat_template: bool = True,
    hidden_size: int = TINY_LLM_HIDDEN,
    num_heads: int = 2,
) -> Path:
    """A Llama-style causal LM (hidden 16, 2 layers, 2 heads) with a byte-level BPE tokenizer.

    ``hidden_size`` and ``num_heads`` make a wider one (runtimes such as vLLM's CPU attention
    need a head size of at least 32)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=byte_level_bpe(CORPUS, 320, ["<unk>", "<pad>", "<s>", "</s>"], "<unk>"),
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        model_max_length=256,
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_sentence_model(directory: Path, *, seed: int = 0) -> Path:
    """A sentence-transformers directory: a tiny BERT (hidden 32, 2 layers) + mean pooling."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel

    tokenizer = bert_tokenizer()
    torch.manual_seed(seed)
    bert = BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=TINY_BERT_HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    )
    with tempfile.TemporaryDirectory() as raw:
        bert.save_pretrained(raw)
        tokenizer.save_pretrained(raw)
        transformer = Transformer(raw, max_seq_length=64)
        pooling = Pooling(transformer.get_embedding_dimension(), "mean")
        SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(directory))
    return directory
