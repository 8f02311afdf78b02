"""Write the MS MARCO pairs that shared/bench/peer_anchor.py samples (same seed, same draws) as JSONL,
so crossdistill's benchmarks score exactly the pairs the peer scores.
Usage: python bench/pairs.py SHARED_DIR OUT.jsonl [N_PAIRS]"""
import json, os, random, sys

shared, out = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 512
random.seed(0)
data = os.path.join(shared, "data", "msmarco-trecdl-subset")
queries = [json.loads(l)["text"] for l in open(os.path.join(data, "queries.jsonl"))]
passages = [json.loads(l)["text"] for l in open(os.path.join(data, "corpus.jsonl"))]
pairs = [(random.choice(queries), random.choice(passages)) for _ in range(n)]
with open(out, "w") as f:
    for q, p in pairs:
        f.write(json.dumps({"query": q, "passage": p}) + "\n")
