"""Inputs for bench/gpu.sh, the same shape and lengths as ../shared/bench/peer_gpu.py measures:

  MODEL_DIR   a BertForSequenceClassification of all-MiniLM-L6-v2's shape (6 layers, hidden 384, 12 heads,
              vocabulary 30522, 1 logit; random weights, torch seed 0, as the peer's), safetensors, with the
              bert-base-uncased WordPiece tokenizer of tests/fixtures/tiny-bert-ce
  PAIRS       N {"query", "passage", "score"} rows whose pair encodes to exactly the peer's token lengths
              (random.seed(0); randint(40, 128) each), from whole-word tokens of that vocabulary

Usage: python bench/gpu_inputs.py MODEL_DIR PAIRS N      (needs torch and transformers, as the peer)
"""
import json
import random
import shutil
import sys
from pathlib import Path

model_dir, pairs_path, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
fixture = Path(__file__).resolve().parent.parent / "tests/fixtures/tiny-bert-ce"

import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

torch.manual_seed(0)
random.seed(0)
cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                 intermediate_size=1536, max_position_embeddings=512, num_labels=1)
model = BertForSequenceClassification(cfg)
lens = [random.randint(40, 128) for _ in range(n)]  # the peer's draw, in the peer's order
model_dir.mkdir(parents=True, exist_ok=True)
model.save_pretrained(model_dir, safe_serialization=True)
for name in ["tokenizer.json", "tokenizer_config.json", "vocab.txt"]:
    shutil.copy(fixture / name, model_dir / name)

vocab = json.load(open(fixture / "tokenizer.json"))["model"]["vocab"]
words = sorted(w for w in vocab if w.isascii() and w.isalpha() and w.islower() and len(w) > 2)
rng = random.Random(1)
with open(pairs_path, "w") as out:
    for length in lens:
        content = length - 3  # [CLS] query [SEP] passage [SEP]
        q = rng.randint(4, 16)
        query = " ".join(rng.choice(words) for _ in range(q))
        passage = " ".join(rng.choice(words) for _ in range(content - q))
        out.write(json.dumps({"query": query, "passage": passage, "score": rng.random()}) + "\n")
print(f"{model_dir}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; "
      f"{pairs_path}: {n} pairs, mean {sum(lens) / n:.1f} tokens")
