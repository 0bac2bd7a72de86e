"""Build a tiny Hugging Face format causal LM on local disk, for GPU checks and tests.

No model hub is reachable at run time, and no pip package was found that ships small causal
LM weights (checked: pypi names with tiny/gpt2/llama/stories; `tinystoriesmodel` is a 75 kB
wheel without weights). So the GPU check builds its own: a byte-level BPE tokenizer trained
on the HaluEval passages and a small Llama-architecture model with seeded random weights,
saved with `save_pretrained`, which vLLM loads like any local checkpoint. Its text is
gibberish; it is a real transformer, so TTFT and token throughput are real measurements.

Needs `transformers`, `tokenizers` and `torch`, which the `vllm` extra installs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TinyLlamaSpec:
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4  # head_dim 64: supported by every vLLM attention backend
    intermediate_size: int = 1024
    vocab_size: int = 4096
    max_position_embeddings: int = 2048
    seed: int = 0


CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}")


def build_tiny_llama(out_dir: Path, corpus: list[str], spec: TinyLlamaSpec | None = None
                     ) -> Path:
    """Write tokenizer, config and safetensors weights into `out_dir` (reused if already
    built with the same spec); returns `out_dir`."""
    spec = spec or TinyLlamaSpec()
    out_dir = Path(out_dir)
    marker = out_dir / "tiny_llama_spec.json"
    if marker.is_file() and json.loads(marker.read_text()) == asdict(spec) \
            and (out_dir / "config.json").is_file():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(corpus, spec.vocab_size)
    tokenizer.save_pretrained(str(out_dir))
    _save_model(out_dir, spec, len(tokenizer))
    marker.write_text(json.dumps(asdict(spec)))
    return out_dir


def _train_tokenizer(corpus: list[str], vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size,
                                  special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _save_model(out_dir: Path, spec: TinyLlamaSpec, vocab: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(spec.seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=spec.hidden_size,
                         intermediate_size=spec.intermediate_size,
                         num_hidden_layers=spec.num_layers,
                         num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
                         max_position_embeddings=spec.max_position_embeddings,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).to(torch.float16)
    model.save_pretrained(str(out_dir), safe_serialization=True)
