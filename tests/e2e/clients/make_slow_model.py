"""Turn the tiny model (tests/e2e/make_tiny_model.py, already built in OUT_DIR) into a slower one:
same tokenizer and chat template, wider and deeper random-weight layers, so that a generation lasts
seconds on a CPU (cancel, idle timeout and outage tests need a request still running). Run with the
vLLM venv's python: `python make_slow_model.py OUT_DIR`."""

import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

out = sys.argv[1]
cfg = LlamaConfig.from_pretrained(out)
# head_dim 64 (1024 / 16); ~110 M parameters.
cfg.update(
    {
        "hidden_size": 1024,
        "intermediate_size": 2816,
        "num_hidden_layers": 8,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "max_position_embeddings": 1024,  # the slow pair serves --max-model-len 1024
    }
)
torch.manual_seed(0)
LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(out)
