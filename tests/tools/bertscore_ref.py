"""The reference side of the BERTScore speed comparison (docs/performance.md):
bert-score 0.3.13's `score()` on cands.txt / refs.txt in the current folder,
one line per pair (P R F1) to ref_out.txt; its own call time on stderr.

  python tests/tools/bertscore_ref.py MODEL_FOLDER   # needs `pip install bert-score` (a test extra)
"""

import os
import sys
import time

os.environ.setdefault("USE_TF", "0")  # transformers beside TF with Keras 3

import bert_score  # noqa: E402

model = sys.argv[1]


def _lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


cands, refs = _lines("cands.txt"), _lines("refs.txt")
start = time.time()
P, R, F = bert_score.score(cands, refs, model_type=model, num_layers=6, batch_size=64, device="cpu", nthreads=0)
print(f"mean F1 {F.mean().item():.6f} score() {time.time() - start:.2f}s", file=sys.stderr)
with open("ref_out.txt", "w") as f:
    for p, r, f1 in zip(P.tolist(), R.tolist(), F.tolist(), strict=True):
        f.write(f"{p} {r} {f1}\n")
