"""Peer side of bench/modern_teachers.sh.

    python bench/modern_teachers_peer.py prepare OUT N_PAIRS
        writes OUT/pairs.jsonl (N deterministic synthetic query/passage pairs, 20-120 words) and
        three mid-size random cross-encoders saved with CrossEncoder.save_pretrained, max_length 128,
        with the tiny fixtures' tokenizers (tests/fixtures/tiny-*-ce):
          OUT/modernbert  ModernBERT-base shape (hidden 768, 12 heads, GeGLU 1152, window 128), 4 layers
          OUT/deberta-v3  DeBERTa-v3-base shape (hidden 768, 12 heads, FFN 3072, 256 buckets), 4 layers
          OUT/electra     ELECTRA-base shape (hidden 768, 12 heads, FFN 3072), 4 layers
          OUT/qwen3-reranker  Qwen3-Reranker-0.6B shape (hidden 1024, 16 query / 8 key-value heads,
                          head_dim 128, SiLU MLP 3072, q/k norms), 4 layers, the fixture's chat
                          template and yes/no LogitScore, max_length 256
    python bench/modern_teachers_peer.py peers OUT REPS BATCH [MODEL...]
        prints JSON: sentence-transformers CrossEncoder.predict pairs/s (median, best of REPS) per model
        (the MODELs named, default all four)
"""

import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from sentence_transformers import CrossEncoder
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DebertaV2Config,
    ElectraConfig,
    ModernBertConfig,
    Qwen3Config,
    Qwen3ForCausalLM,
)

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["modernbert", "deberta-v3", "electra", "qwen3-reranker"]
WORDS = (
    "the a of to and in is was for on that with as by at from search model query passage rank "
    "teacher student score relevance document retrieval language city river history science water "
    "energy market music film sport health disease protein galaxy planet computer network memory"
).split()


def prepare(out, n_pairs):
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with open(out / "pairs.jsonl", "w") as f:
        for _ in range(n_pairs):
            query = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
            passage = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 110)))
            f.write(json.dumps({"query": query, "passage": passage}) + "\n")
    common = dict(hidden_size=768, num_hidden_layers=4, num_attention_heads=12, num_labels=1)
    configs = {
        "modernbert": (
            "tiny-modernbert-cls-ce",
            ModernBertConfig(
                vocab_size=600, intermediate_size=1152, max_position_embeddings=512,
                local_attention=128, global_attn_every_n_layers=3, pad_token_id=2,
                cls_token_id=0, sep_token_id=1, bos_token_id=0, eos_token_id=1, **common,
            ),
        ),
        "deberta-v3": (
            "tiny-deberta-v3-ce",
            DebertaV2Config(
                vocab_size=600, intermediate_size=3072, max_position_embeddings=512, type_vocab_size=0,
                relative_attention=True, position_buckets=256, pos_att_type=["p2c", "c2p"],
                position_biased_input=False, norm_rel_ebd="layer_norm", share_att_key=True,
                max_relative_positions=-1, layer_norm_eps=1e-7, pad_token_id=0, **common,
            ),
        ),
        "electra": (
            "tiny-electra-ce",
            ElectraConfig(vocab_size=600, embedding_size=768, intermediate_size=3072,
                          max_position_embeddings=512, pad_token_id=0, **common),
        ),
    }
    for name, (tokenizer_from, config) in configs.items():
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(config)
        tmp = out / f"{name}-hf"
        model.save_pretrained(tmp)
        fixture = ROOT / "tests" / "fixtures" / tokenizer_from
        for file in ["tokenizer.json", "tokenizer_config.json"]:
            (tmp / file).write_bytes((fixture / file).read_bytes())
        CrossEncoder(str(tmp), max_length=128, device="cpu").save_pretrained(str(out / name))
    prepare_qwen3(out)
    print(json.dumps({"pairs": n_pairs, "models": MODELS}))


def prepare_qwen3(out):
    """A Qwen3 causal-LM reranker in sentence-transformers 6's LogitScore layout."""
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.cross_encoder.modules import LogitScore

    fixture = ROOT / "tests" / "fixtures" / "tiny-qwen3-reranker"
    tokenizer = AutoTokenizer.from_pretrained(str(fixture))
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=1024, intermediate_size=3072, num_hidden_layers=4,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=4096,
        rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=True, rope_theta=1_000_000.0,
        use_cache=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).eval()
    tmp = out / "qwen3-reranker-hf"
    model.save_pretrained(tmp)
    tokenizer.model_max_length = 256
    tokenizer.save_pretrained(tmp)
    transformer = Transformer(str(tmp), transformer_task="text-generation", max_seq_length=256)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    ce = CrossEncoder(modules=[transformer, LogitScore(true_token_id=yes, false_token_id=no)])
    ce.save_pretrained(str(out / "qwen3-reranker"))


def peers(out, reps, batch, names):
    pairs = [json.loads(line) for line in open(out / "pairs.jsonl")]
    pairs = [(p["query"], p["passage"]) for p in pairs]
    result = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for name in names:
        model = CrossEncoder(str(out / name), device="cpu")
        model.predict(pairs[:32], batch_size=batch, activation_fn=torch.nn.Identity())
        rates = []
        for _ in range(reps):
            start = time.perf_counter()
            model.predict(pairs, batch_size=batch, activation_fn=torch.nn.Identity())
            rates.append(len(pairs) / (time.perf_counter() - start))
        result[name] = {"pairs_per_s_median": statistics.median(rates), "pairs_per_s_best": max(rates)}
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        peers(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:] or MODELS)
