#!/usr/bin/env python3
"""Benchmark `crossdistill mine` on a corpus of >= 50,000 passages: embedding throughput, mining time and
peak memory.

The corpus repeats the MS MARCO TREC-DL subset's 5,000 passages with deterministic perturbations (variant v
of a passage drops one word and swaps two neighbours, so every text is distinct and about as long as the
original). The pairs are the 43 judged queries with their best passage plus pseudo-queries (the first
words of a passage variant, paired with the original passage) up to N_PAIRS.

Two runs of the same command: cold (embeds the corpus and queries, saves them with --cache-folder) and warm
(loads the embeddings; what remains is search, selection and output). Each runs under /usr/bin/time -v for
the peak resident memory. With PEER_PYTHON (sentence-transformers installed), SentenceTransformer.encode
embeds the first PEER_TEXTS corpus passages in the same session, for a throughput ratio.

Usage: bench/mine_bench.py DATA_DIR MODEL_DIR [OUT_DIR] [N_PASSAGES] [N_PAIRS]
Env: CROSSDISTILL (binary; default $CARGO_TARGET_DIR or target, /debug/crossdistill), PEER_PYTHON,
     PEER_TEXTS (default 2000), BATCH_SIZE (default 32). Standard library only.
"""
import json
import os
import re
import subprocess
import sys
import time

data_dir, model_dir = sys.argv[1], sys.argv[2]
out_dir = sys.argv[3] if len(sys.argv) > 3 else "/tmp/crossdistill-mine-bench"
n_passages = int(sys.argv[4]) if len(sys.argv) > 4 else 50_000
n_pairs = int(sys.argv[5]) if len(sys.argv) > 5 else 5_000
batch_size = os.environ.get("BATCH_SIZE", "32")
binary = os.environ.get(
    "CROSSDISTILL",
    os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "debug", "crossdistill"),
)
os.makedirs(out_dir, exist_ok=True)

base = [json.loads(line)["text"] for line in open(os.path.join(data_dir, "corpus.jsonl"))]
queries = {}
for line in open(os.path.join(data_dir, "queries.jsonl")):
    row = json.loads(line)
    queries[row["_id"]] = row["text"]
passages = {}
for line in open(os.path.join(data_dir, "corpus.jsonl")):
    row = json.loads(line)
    passages[row["_id"]] = row["text"]
best = {}
for line in open(os.path.join(data_dir, "qrels", "test.tsv")):
    query_id, passage_id, grade = line.split()
    if int(grade) > best.get(query_id, ("", -1))[1]:
        best[query_id] = (passage_id, int(grade))


def variant(text, v):
    if v == 0:
        return text
    words = text.split()
    if len(words) > 3:
        del words[(v * 7919) % len(words)]
        i = (v * 104729) % (len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words) + f" ({v})"


corpus, seen = [], set()
v = 0
while len(corpus) < n_passages:
    for text in base:
        candidate = variant(text, v)
        if candidate not in seen:
            seen.add(candidate)
            corpus.append(candidate)
            if len(corpus) == n_passages:
                break
    v += 1
corpus_path = os.path.join(out_dir, f"corpus-{n_passages}.jsonl")
with open(corpus_path, "w") as f:
    for text in corpus:
        f.write(json.dumps({"text": text}) + "\n")

pairs_path = os.path.join(out_dir, f"pairs-{n_pairs}.jsonl")
with open(pairs_path, "w") as f:
    count = 0
    for query_id, (passage_id, _) in best.items():
        f.write(json.dumps({"query": queries[query_id], "positive": passages[passage_id]}) + "\n")
        count += 1
    i = 0
    while count < n_pairs:
        text = base[i % len(base)]
        pseudo = " ".join(variant(text, 1 + i // len(base)).split()[:8])
        f.write(json.dumps({"query": pseudo, "positive": text}) + "\n")
        count += 1
        i += 1

cache = os.path.join(out_dir, "cache")
command = [binary, "mine", "--model", model_dir, "--input", pairs_path, "--corpus", corpus_path,
           "--output", os.path.join(out_dir, "mined.jsonl"), "--num-negatives", "5",
           "--batch-size", batch_size, "--cache-folder", cache]


def run(label):
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v"] + command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{label} failed:\n{proc.stderr[-3000:]}")
    peak_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    stages = dict(
        (name.strip().rsplit(" ", 1)[0], float(name.strip().rsplit(" ", 1)[1].rstrip("s")))
        for line in proc.stderr.splitlines() if line.startswith("stages: ")
        for name in line[len("stages: "):].split(", ")
    )
    return {"wall_s": round(seconds, 2), "peak_rss_mib": round(peak_kib / 1024, 1), "stages_s": stages,
            "report": proc.stdout}


for name in os.listdir(cache) if os.path.isdir(cache) else []:
    os.remove(os.path.join(cache, name))
results = {"command": " ".join(command), "passages": len(corpus), "pairs": n_pairs,
           "mean_passage_words": round(sum(len(t.split()) for t in corpus) / len(corpus), 1)}
results["cold"] = run("cold run")
results["warm"] = run("warm run")
embed_s = results["cold"]["stages_s"].get("embedding corpus")
if embed_s:
    results["ours_corpus_texts_per_s"] = round(len(corpus) / embed_s, 1)

peer = os.environ.get("PEER_PYTHON")
if peer:
    peer_texts = int(os.environ.get("PEER_TEXTS", "2000"))
    script = f"""
import json, time, torch
from sentence_transformers import SentenceTransformer
texts = [json.loads(l)["text"] for l in open({corpus_path!r})][:{peer_texts}]
model = SentenceTransformer({model_dir!r}, device="cpu")
model.encode(texts[:64], batch_size={batch_size})
started = time.perf_counter()
model.encode(texts, batch_size={batch_size}, normalize_embeddings=True)
print("PEER", len(texts) / (time.perf_counter() - started), torch.get_num_threads())
"""
    proc = subprocess.run([peer, "-c", script], capture_output=True, text=True)
    if proc.returncode == 0:
        rate, threads = proc.stdout.split("PEER")[1].split()
        results["peer_st_encode_texts_per_s"] = round(float(rate), 1)
        results["peer_threads"] = int(threads)
        # Ours on the same texts in the same session: one pair whose positive is the first text, so the
        # deduplicated corpus is exactly those texts.
        sub_corpus = os.path.join(out_dir, f"corpus-first-{peer_texts}.jsonl")
        with open(sub_corpus, "w") as f:
            for text in corpus[:peer_texts]:
                f.write(json.dumps({"text": text}) + "\n")
        sub_pairs = os.path.join(out_dir, "one-pair.jsonl")
        with open(sub_pairs, "w") as f:
            f.write(json.dumps({"query": "a query", "positive": corpus[0]}) + "\n")
        sub = [binary, "mine", "--model", model_dir, "--input", sub_pairs, "--corpus", sub_corpus,
               "--output", os.path.join(out_dir, "sub.jsonl"), "--batch-size", batch_size, "--no-cache"]
        proc = subprocess.run(sub, capture_output=True, text=True)
        line = next(l for l in proc.stderr.splitlines() if l.startswith("stages: "))
        stage = dict((s.rsplit(" ", 1)[0], float(s.rsplit(" ", 1)[1].rstrip("s")))
                     for s in line[len("stages: "):].split(", "))
        results["ours_same_texts_texts_per_s"] = round(peer_texts / stage["embedding corpus"], 1)
        results["ours_over_peer"] = round(
            results["ours_same_texts_texts_per_s"] / results["peer_st_encode_texts_per_s"], 3)
    else:
        results["peer_error"] = proc.stderr[-2000:]

json.dump(results, open(os.path.join(out_dir, "bench.json"), "w"), indent=1)
print(json.dumps({k: v for k, v in results.items() if k not in ("cold", "warm")}, indent=1))
for label in ("cold", "warm"):
    print(f"== {label}: wall {results[label]['wall_s']}s, peak RSS {results[label]['peak_rss_mib']} MiB, "
          f"stages {results[label]['stages_s']}")
print(results["warm"]["report"])
