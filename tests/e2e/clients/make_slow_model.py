"""Turn the tiny model (tests/e2e/make_tiny_model.py, already built in OUT_DIR) into a slower one:
same tokenizer and chat template, wider and deeper random-weight layers, so that a generation lasts
seconds on a CPU (cancel, idle timeout and outage tests need a request still running). Run with the
vLLM venv's python: `python make_slow_model.py OUT_DIR`."""

import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

out = sys.argv[1]
cfg = LlamaConfig.from_pretrained(out)
# head_dim 64 (1024 / 16); 12 layers of 12.85 M parameters (attention 4 x 1024², MLP 3 x 1024 x 2816): ~155 M,
# a 900-token generation ~10 s here (8 layers: ~7 s, too close to the 1-4 s stalls a busy machine adds).
cfg.update(
    {
        "hidden_size": 1024,
        "intermediate_size": 2816,
        "num_hidden_layers": 12,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "max_position_embeddings": 1024,  # the slow pair serves --max-model-len 1024
    }
)
torch.manual_seed(0)
LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(out)
