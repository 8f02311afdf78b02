"""The Python side of bench/onnx_teacher.sh: the model, the pairs, and the peer timings.

    python onnx_teacher_peer.py prepare SHARED_DIR OUT_DIR N_PAIRS
        all-MiniLM-L6-v2 ($MINILM, default ~/.cache/crossdistill/models/all-MiniLM-L6-v2) as a
        cross-encoder with a fresh 1-logit head (seed 0, as shared/bench/peer_anchor.py), saved
        to OUT_DIR/minilm-ce (HF layout, so crossdistill's candle teacher loads the same weights),
        exported to OUT_DIR/minilm-ce/model.onnx exactly as peer_anchor.py exports it, and
        dynamically int8-quantised (onnxruntime.quantization.quantize_dynamic, per-channel
        weight scales, MatMul only) to model.int8.onnx. N_PAIRS MS MARCO (query, passage) pairs drawn as peer_anchor.py draws
        them go to OUT_DIR/pairs.jsonl.
        $TEACHER: a trained cross-encoder directory (e.g. runs/stsb-teacher/final, made by
        recipes/stsb-teacher.toml) used instead of the fresh head, so that the int8 Spearman is
        measured on a real reranker's score spread. $PAIRS=stsb: the first N_PAIRS STSb dev pairs
        (English columns of data/stsb-multi/dev.jsonl, 1,500 rows: the teacher's own domain) instead of MS MARCO pairs.

    python onnx_teacher_peer.py peers OUT_DIR REPS
        pairs/s, on OUT_DIR/pairs.jsonl with max_length 128 and batch 32, of
        sentence-transformers CrossEncoder.predict and of onnxruntime's own Python loop
        (tokenise a batch, session.run) on model.onnx and model.int8.onnx, unsorted and
        length-sorted; REPS timed passes each (interleaved), after a warm-up on 64 pairs. Prints
        JSON with the median and best of the passes.

Run in a venv with torch, sentence-transformers, onnx and onnxruntime==1.31.1, with the
OPENBLAS_* variables unset (see shared/bench/README.md).
"""
import json
import os
import random
import statistics
import sys
import time

import numpy as np
import torch

MAX_LENGTH, BATCH = 128, 32
NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def prepare(shared, out, n):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers.cross_encoder import CrossEncoder

    torch.manual_seed(0)
    random.seed(0)
    if os.environ.get("PAIRS", "msmarco") == "stsb":
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        rows = [json.loads(l) for l in open(os.path.join(repo, "data", "stsb-multi", "dev.jsonl"))]
        pairs = [(r["en_1"], r["en_2"]) for r in rows[:n]]
    else:
        data = os.path.join(shared, "data", "msmarco-trecdl-subset")
        queries = [json.loads(l)["text"] for l in open(os.path.join(data, "queries.jsonl"))]
        passages = [json.loads(l)["text"] for l in open(os.path.join(data, "corpus.jsonl"))]
        pairs = [(random.choice(queries), random.choice(passages)) for _ in range(n)]
    with open(os.path.join(out, "pairs.jsonl"), "w") as f:
        for q, p in pairs:
            f.write(json.dumps({"query": q, "passage": p}) + "\n")

    minilm = os.environ.get("MINILM", os.path.expanduser("~/.cache/crossdistill/models/all-MiniLM-L6-v2"))
    teacher = os.environ.get("TEACHER")
    if teacher:
        ce = CrossEncoder(teacher, max_length=MAX_LENGTH, device="cpu")
    else:
        ce = CrossEncoder(minilm, num_labels=1, max_length=MAX_LENGTH, device="cpu")
    model_dir = os.path.join(out, "minilm-ce")
    ce.save_pretrained(model_dir)
    hf = next(m for m in ce.modules() if m.__class__.__name__.endswith("ForSequenceClassification"))
    hf.eval()
    enc = ce.tokenizer(["a b"], ["c d"], return_tensors="pt")
    onnx_path = os.path.join(model_dir, "model.onnx")
    torch.onnx.export(hf, tuple(enc[k] for k in NAMES), onnx_path, input_names=NAMES, output_names=["logits"],
                      dynamic_axes={**{k: {0: "b", 1: "s"} for k in NAMES}, "logits": {0: "b"}},
                      opset_version=17, dynamo=False)
    # Per-channel weight scales on the MatMuls, embeddings left in f32: on the trained STSb teacher
    # the default (per-tensor, Gather included) keeps a Spearman of 0.988 with the f32 scores on
    # STSb dev and 0.970 on MS MARCO pairs; this keeps 0.997 and 0.994.
    quantize_dynamic(onnx_path, os.path.join(model_dir, "model.int8.onnx"), weight_type=QuantType.QInt8,
                     per_channel=True, op_types_to_quantize=["MatMul"])
    print(json.dumps({"model_dir": model_dir, "n_pairs": n, "teacher": teacher or "fresh head",
                      "pairs": os.environ.get("PAIRS", "msmarco"),
                      "onnx_mb": os.path.getsize(onnx_path) / 1e6,
                      "int8_onnx_mb": os.path.getsize(os.path.join(model_dir, "model.int8.onnx")) / 1e6}))


def peers(out, reps):
    import onnxruntime as ort
    from sentence_transformers.cross_encoder import CrossEncoder

    torch.set_num_threads(os.cpu_count())
    pairs = [(r["query"], r["passage"]) for r in map(json.loads, open(os.path.join(out, "pairs.jsonl")))]
    model_dir = os.path.join(out, "minilm-ce")
    ce = CrossEncoder(model_dir, max_length=MAX_LENGTH, device="cpu")
    tok = ce.tokenizer
    lens = [len(x) for x in tok([a for a, _ in pairs], [b for _, b in pairs], truncation=True,
                                max_length=MAX_LENGTH)["input_ids"]]

    def session(file):
        so = ort.SessionOptions()
        so.intra_op_num_threads = os.cpu_count()
        return ort.InferenceSession(os.path.join(model_dir, file), so, providers=["CPUExecutionProvider"])

    def ort_loop(sess, sort):
        # peer_anchor.py's loop: sorted by character length, longest first.
        order = (sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]) - len(pairs[i][1]))
                 if sort else list(range(len(pairs))))
        out_logits = np.zeros(len(pairs), dtype=np.float32)
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            e = tok([pairs[j][0] for j in idx], [pairs[j][1] for j in idx], padding=True, truncation=True,
                    max_length=MAX_LENGTH, return_tensors="np")
            out_logits[idx] = sess.run(None, {k: e[k].astype("int64") for k in NAMES})[0][:, 0]
        return out_logits

    f32, int8 = session("model.onnx"), session("model.int8.onnx")
    runs = {
        "st_predict": lambda: ce.predict(pairs, batch_size=BATCH, activation_fn=torch.nn.Identity()),
        "ort_python_unsorted": lambda: ort_loop(f32, False),
        "ort_python_sorted": lambda: ort_loop(f32, True),
        "ort_python_int8_sorted": lambda: ort_loop(int8, True),
    }
    warm = pairs[:64]
    ce.predict(warm, batch_size=BATCH)
    for sess in (f32, int8):
        e = tok([a for a, _ in warm], [b for _, b in warm], padding=True, truncation=True, max_length=MAX_LENGTH,
                return_tensors="np")
        sess.run(None, {k: e[k].astype("int64") for k in NAMES})
    times = {name: [] for name in runs}
    scores = {}
    for _ in range(reps):
        for name, run in runs.items():
            t = time.perf_counter()
            scores[name] = np.asarray(run(), dtype=np.float32)
            times[name].append(time.perf_counter() - t)
    n = len(pairs)
    res = {"n_pairs": n, "threads": os.cpu_count(), "mean_tokens_per_pair": float(np.mean(lens)),
           "torch": torch.__version__, "onnxruntime": ort.__version__}
    for name, ts in times.items():
        res[name] = {"median_pairs_per_s": n / statistics.median(ts), "best_pairs_per_s": n / min(ts)}
    res["ort_python_vs_st_max_abs_logit_diff"] = float(np.abs(scores["ort_python_sorted"] - scores["st_predict"]).max())
    with open(os.path.join(out, "peer_logits.json"), "w") as f:
        json.dump({k: v.tolist() for k, v in scores.items()}, f)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "peers":
        peers(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f"unknown mode {sys.argv[1]!r}; expected prepare or peers")
