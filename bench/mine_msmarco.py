#!/usr/bin/env python3
"""Mine hard negatives on the MS MARCO TREC-DL subset and count the false negatives the qrels reveal.

Pairs: every judged query with its best-graded passage as the positive (ties: the first in qrels order).
Corpus: the subset's 5,000 passages. For each configuration, `crossdistill mine` writes triplets; a mined
negative is a false negative when the qrels judge it relevant to the query (grade >= 1; grade >= 2 is
"highly relevant"). Every configuration must also never return the query's own positive as a negative.

With PEER_PYTHON (a Python with sentence-transformers and datasets), sentence-transformers'
mine_hard_negatives runs on the same pairs and corpus (the first configuration) as the reference: the
script reports how many (query, positive, negative) triplets agree and the largest score difference,
and both wall times.

Usage: bench/mine_msmarco.py DATA_DIR MODEL_DIR [OUT_DIR]
  DATA_DIR   msmarco-trecdl-subset (queries.jsonl, corpus.jsonl, qrels/test.tsv)
  MODEL_DIR  all-MiniLM-L6-v2 (shared/models/fetch-all-MiniLM-L6-v2.sh assembles it)
Env: CROSSDISTILL (the binary; default $CARGO_TARGET_DIR or target, /debug/crossdistill),
     PEER_PYTHON (optional).
Standard library only.
"""
import collections
import json
import os
import subprocess
import sys
import time

data_dir, model_dir = sys.argv[1], sys.argv[2]
out_dir = sys.argv[3] if len(sys.argv) > 3 else "/tmp/crossdistill-mine-msmarco"
os.makedirs(out_dir, exist_ok=True)
binary = os.environ.get(
    "CROSSDISTILL",
    os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "debug", "crossdistill"),
)

queries = {}
for line in open(os.path.join(data_dir, "queries.jsonl")):
    row = json.loads(line)
    queries[row["_id"]] = row["text"]
passages = {}
for line in open(os.path.join(data_dir, "corpus.jsonl")):
    row = json.loads(line)
    passages[row["_id"]] = row["text"]
qrels = collections.defaultdict(dict)
for line in open(os.path.join(data_dir, "qrels", "test.tsv")):
    query_id, passage_id, grade = line.split()
    qrels[query_id][passage_id] = int(grade)

ids_of_text = collections.defaultdict(set)
for passage_id, text in passages.items():
    ids_of_text[text].add(passage_id)
query_of_text = {text: query_id for query_id, text in queries.items()}

pairs_path = os.path.join(out_dir, "pairs.jsonl")
pairs_all_path = os.path.join(out_dir, "pairs-all-relevant.jsonl")
with open(pairs_path, "w") as one, open(pairs_all_path, "w") as every:
    for query_id, judged in qrels.items():
        best = max(judged.items(), key=lambda item: item[1])[0]
        one.write(json.dumps({"query": queries[query_id], "positive": passages[best]}) + "\n")
        for passage_id, grade in judged.items():
            if grade >= 2:
                every.write(json.dumps({"query": queries[query_id], "positive": passages[passage_id]}) + "\n")
corpus_path = os.path.join(data_dir, "corpus.jsonl")


def grade(query_text, passage_text):
    judged = qrels[query_of_text[query_text]]
    return max((judged.get(i, 0) for i in ids_of_text[passage_text]), default=0)


def analyse(path):
    rows = [json.loads(line) for line in open(path)]
    own_positive = sum(1 for r in rows if r["negative"] == r["positive"])
    grades = collections.Counter(grade(r["query"], r["negative"]) for r in rows)
    n = len(rows)
    relevant = sum(c for g, c in grades.items() if g >= 1)
    highly = sum(c for g, c in grades.items() if g >= 2)
    return {
        "triplets": n,
        "queries": len({r["query"] for r in rows}),
        "negative_is_its_positive": own_positive,
        "false_negatives_grade>=1": relevant,
        "false_negative_rate_grade>=1": relevant / n if n else float("nan"),
        "false_negatives_grade>=2": highly,
        "false_negative_rate_grade>=2": highly / n if n else float("nan"),
        "by_grade": dict(sorted(grades.items())),
    }


configs = [
    ("top5", pairs_path, ["--num-negatives", "5"]),
    ("top5-relative-margin-0.05", pairs_path, ["--num-negatives", "5", "--relative-margin", "0.05"]),
    ("top5-range-min-20", pairs_path, ["--num-negatives", "5", "--range-min", "20"]),
    ("top5-random-range-max-50", pairs_path, ["--num-negatives", "5", "--range-max", "50", "--sampling-strategy", "random"]),
    ("top5-all-grade>=2-as-positives", pairs_all_path, ["--num-negatives", "5"]),
]
results = {}
for name, pairs, flags in configs:
    output = os.path.join(out_dir, f"{name}.jsonl")
    command = [binary, "mine", "--model", model_dir, "--input", pairs, "--corpus", corpus_path,
               "--output", output, "--output-scores", "--batch-size", "32",
               "--cache-folder", os.path.join(out_dir, "cache")] + flags
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{run.stderr}")
    results[name] = {"command": " ".join(command), "seconds": round(seconds, 2), **analyse(output)}
    results[name]["report"] = run.stdout
    results[name]["stages"] = [l for l in run.stderr.splitlines() if l.startswith("stages:")]
    print(f"== {name}: {seconds:.1f}s\n{run.stdout}{run.stderr.splitlines()[-1]}")
    summary = {k: v for k, v in results[name].items() if k not in ("report", "command")}
    print(json.dumps(summary, indent=1))

peer = os.environ.get("PEER_PYTHON")
if peer:
    peer_out = os.path.join(out_dir, "st-top5.jsonl")
    script = f"""
import json, time
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import mine_hard_negatives
rows = [json.loads(l) for l in open({pairs_path!r})]
corpus = [json.loads(l)["text"] for l in open({corpus_path!r})]
model = SentenceTransformer({model_dir!r}, device="cpu")
started = time.perf_counter()
mined = mine_hard_negatives(Dataset.from_list(rows), model, corpus=corpus, num_negatives=5,
                            batch_size=32, output_scores=True, verbose=True)
seconds = time.perf_counter() - started
mined.to_json({peer_out!r}, lines=True, force_ascii=False)
print("ST_SECONDS", seconds)
"""
    run = subprocess.run([peer, "-c", script], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"the sentence-transformers peer failed:\n{run.stderr[-3000:]}")
    st_seconds = float(run.stdout.split("ST_SECONDS")[1])
    ours = [json.loads(l) for l in open(os.path.join(out_dir, "top5.jsonl"))]
    theirs = [json.loads(l) for l in open(peer_out)]
    key = lambda r: (r["query"], r["positive"], r["negative"])
    ours_keys = {key(r): r["scores"] for r in ours}
    theirs_keys = {key(r): r["scores"] for r in theirs}
    shared = set(ours_keys) & set(theirs_keys)
    diff = max((abs(a - b) for k in shared for a, b in zip(ours_keys[k], theirs_keys[k])), default=0.0)
    peer_result = {
        "st_triplets": len(theirs),
        "ours_triplets": len(ours),
        "same_triplets": len(shared),
        "same_order": [key(r) for r in ours] == [key(r) for r in theirs],
        "max_score_diff": diff,
        "st_seconds": round(st_seconds, 2),
        "ours_seconds_same_config_cold": results["top5"]["seconds"],
        "st_report": run.stdout,
        **{f"st_{k}": v for k, v in analyse(peer_out).items()},
    }
    results["sentence-transformers"] = peer_result
    print("== sentence-transformers mine_hard_negatives (top5)")
    print(run.stdout)
    print(json.dumps({k: v for k, v in peer_result.items() if k != "st_report"}, indent=1))

json.dump(results, open(os.path.join(out_dir, "results.json"), "w"), indent=1)
print(f"results: {os.path.join(out_dir, 'results.json')}")
