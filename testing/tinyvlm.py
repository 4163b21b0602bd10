"""Tiny models for `mlx_vlm.server`, random weights, made in a second and never downloaded:

- `make_tiny_embedder`: a BERT encoder (16 hidden units, a WordPiece vocabulary of a few dozen
  words) that `--embedding-model` loads and `/v1/embeddings` answers with (mean-pooled, normalised);
- `make_tiny_reranker`: the same encoder with a one-label classifier head
  (`BertForSequenceClassification`), which `--reranker-model` loads and `/v1/rerank` scores with;
- `make_tiny_vlm`: a Qwen2-VL (a 1-block vision tower of 16 units on 14-pixel patches, 2x2 merged,
  and a 2-layer language model) with an image processor config and a word-level tokenizer, which
  `--model` loads and `/v1/chat/completions` answers with, an image or not.

The weights are written under the names the mlx modules give them (mlx_vlm's own classes, built
from the config), so the files are what mlx_vlm's loader expects. The answers are noise.
`broken=True` writes a vision config whose tower does not match the weights: the load fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WORDS = ["hello", "world", "the", "a", "model", "is", "tiny", "answer", "yes", "no", "mlx", "ok", "cat", "dog"]
WORDS += ["red", "blue", "image", "picture", "what", "see", "you", "do", "search", "text", "apple", "tree"]
ENCODER = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32}


def _save_weights(target: Path, model: Any) -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(target / "model.safetensors"), weights, metadata={"format": "mlx"})


def _wordpiece_tokenizer(target: Path) -> int:
    """A BERT-style WordPiece tokenizer ([CLS] text [SEP], pairs with token types); its size."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(97, 123)] + [f"##{chr(c)}" for c in range(97, 123)]
    vocab = {tok: i for i, tok in enumerate(specials + letters + WORDS + list(".,?!"))}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    fast.save_pretrained(str(target))
    return len(vocab)


def _bert(target: Path, *, classifier: bool) -> Path:
    import mlx.core as mx
    from mlx_vlm.models import bert

    target.mkdir(parents=True, exist_ok=True)
    vocab_size = _wordpiece_tokenizer(target)
    config: dict[str, Any] = {
        "model_type": "bert",
        "architectures": ["BertForSequenceClassification" if classifier else "BertModel"],
        "vocab_size": vocab_size,
        "max_position_embeddings": 64,
        "type_vocab_size": 2,
        "pad_token_id": 0,
        **ENCODER,
    }
    if classifier:
        config |= {"num_labels": 1, "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}
    (target / "config.json").write_text(json.dumps(config, indent=2))
    mx.random.seed(0)
    model_config = bert.ModelConfig.from_dict(config)
    model = bert.SequenceClassificationModel(model_config) if classifier else bert.Model(model_config)
    _save_weights(target, model)
    return target


def make_tiny_embedder(target: Path) -> Path:
    """A BERT encoder `mlx_vlm.server --embedding-model` serves at /v1/embeddings."""
    return _bert(target, classifier=False)


def make_tiny_reranker(target: Path) -> Path:
    """A BERT cross-encoder `mlx_vlm.server --reranker-model` serves at /v1/rerank."""
    return _bert(target, classifier=True)


VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for part in m['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }} "
    "{% elif part['type'] in ('image', 'image_url', 'input_image') %}<|vision_start|><|image_pad|><|vision_end|> "
    "{% endif %}{% endfor %}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def _word_tokenizer(target: Path) -> dict[str, int]:
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", *VISION_TOKENS]
    vocab = {tok: i for i, tok in enumerate(specials + [chr(c) for c in range(33, 127)] + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens([AddedToken(tok, special=True) for tok in VISION_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = QWEN_TEMPLATE
    fast.save_pretrained(str(target))
    (target / "chat_template.jinja").write_text(QWEN_TEMPLATE)
    return vocab


PATCH = 14  # the image is resized to a multiple of 28 (patch x merge): a 28x28 image is 1 token


def make_tiny_vlm(target: Path, *, broken: bool = False) -> Path:
    """A Qwen2-VL `mlx_vlm.server --model` serves, images in chat included; `broken`: a vision
    config that does not match the weights written, so the load fails."""
    import mlx.core as mx
    from mlx_vlm.models import qwen2_vl

    target.mkdir(parents=True, exist_ok=True)
    vocab = _word_tokenizer(target)
    vision = {"model_type": "qwen2_vl", "depth": 1, "embed_dim": 16, "hidden_size": 16, "num_heads": 2}
    vision |= {"patch_size": PATCH, "spatial_merge_size": 2, "temporal_patch_size": 2, "mlp_ratio": 2}
    config: dict[str, Any] = {
        "model_type": "qwen2_vl",
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "intermediate_size": 32,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6,
        "vocab_size": len(vocab),
        "max_position_embeddings": 512,
        "rope_theta": 10000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 1, 1]},
        "tie_word_embeddings": False,
        "vision_config": vision,
        "image_token_id": vocab["<|image_pad|>"],
        "video_token_id": vocab["<|video_pad|>"],
        "vision_start_token_id": vocab["<|vision_start|>"],
        "vision_end_token_id": vocab["<|vision_end|>"],
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    mx.random.seed(0)
    model_config = qwen2_vl.ModelConfig.from_dict(dict(config))
    model_config.text_config = qwen2_vl.TextConfig.from_dict(model_config.text_config)
    model_config.vision_config = qwen2_vl.VisionConfig.from_dict(vision)
    _save_weights(target, qwen2_vl.Model(model_config))
    if broken:
        config["vision_config"] = {**vision, "embed_dim": 32}
    (target / "config.json").write_text(json.dumps(config, indent=2))
    image_processor = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
        "patch_size": PATCH,
        "merge_size": 2,
        "temporal_patch_size": 2,
        "min_pixels": 28 * 28,
        "max_pixels": 56 * 56,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    (target / "preprocessor_config.json").write_text(json.dumps(image_processor, indent=2))
    return target


if __name__ == "__main__":
    import sys

    kinds = {"embedder": make_tiny_embedder, "reranker": make_tiny_reranker, "vlm": make_tiny_vlm}
    print(kinds[sys.argv[1]](Path(sys.argv[2])))
