"""PyTorch peer of `cargo bench --bench student -- train` for a ModernBERT student (see
bench/modernbert_student.sh).

    prepare OUT          a random ModernBertForSequenceClassification of jhu-clsp/ettin-encoder-17m's
                         shape (hidden 256, GeGLU 384, 7 layers, 4 heads, vocab 50368, window 128,
                         global every 3rd layer) in OUT/ettin-17m-shape, with the byte-level BPE
                         tokenizer of tests/fixtures/tiny-modernbert-cls-ce (ids < 600)
    train OUT PAIRS [NAME]
                         pairs/s of forward + backward + clip + AdamW, batch 16, every pair padded
                         to 128 tokens, BCE on alternating 0/1 labels, 1 warm-up step then 6 timed
                         steps, for attn_implementation "sdpa" and "eager"; one JSON line each
                         (NAME: another model folder under OUT, default ettin-17m-shape)

Run with the reference venv: /work/venv-ref/bin/python bench/modernbert_student_peer.py ...
"""

import json
import shutil
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, ModernBertConfig

ROOT = Path(__file__).resolve().parent.parent
BATCH, LENGTH, STEPS = 16, 128, 6


def prepare(out):
    out = Path(out) / "ettin-17m-shape"
    out.mkdir(parents=True, exist_ok=True)
    config = ModernBertConfig(
        vocab_size=50368,
        hidden_size=256,
        intermediate_size=384,
        num_hidden_layers=7,
        num_attention_heads=4,
        max_position_embeddings=7999,
        local_attention=128,
        global_attn_every_n_layers=3,
        pad_token_id=2,
        num_labels=1,
        classifier_pooling="mean",
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(out)
    fixture = ROOT / "tests/fixtures/tiny-modernbert-cls-ce"
    for name in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(fixture / name, out / name)
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    tokenizer_config["model_max_length"] = LENGTH
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    print(out)


def train(out, pairs_path, attn, name="ettin-17m-shape"):
    model_dir = Path(out) / name
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), attn_implementation=attn)
    model.train()
    pairs = [json.loads(line) for line in open(pairs_path)]
    pairs = [(p["query"], p["passage"]) for p in pairs]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    labels = torch.tensor([float(i % 2) for i in range(BATCH)])

    def step(index):
        batch = pairs[index * BATCH : (index + 1) * BATCH]
        enc = tokenizer(
            [q for q, _ in batch],
            [p for _, p in batch],
            truncation="longest_first",
            max_length=LENGTH,
            padding="max_length",
            return_tensors="pt",
        )
        feed = {k: v for k, v in enc.items() if k in tokenizer.model_input_names}
        logits = model(**feed).logits.view(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    step(0)
    started = time.perf_counter()
    for s in range(STEPS):
        step(s)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "peer": f"pytorch {torch.__version__} ({attn})",
                "model": model_dir.name,
                "threads": torch.get_num_threads(),
                "steps": STEPS,
                "batch_size": BATCH,
                "seconds": seconds,
                "pairs_per_s": STEPS * BATCH / seconds,
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2])
    else:
        for attn in ["sdpa", "eager"]:
            train(sys.argv[2], sys.argv[3], attn, *sys.argv[4:5])
