"""Reference: fine-tune a Hugging Face BERT folder on GLUE SST-2 with
transformers (PyTorch `BertForSequenceClassification`), with the same recipe
as `bert-jax finetune` (AdamW eps 1e-6, weight decay 0.01 except biases and
LayerNorm, linear warmup then linear decay to 0, global-norm clip 1.0,
dropout 0.1, [CLS] a [SEP] truncated to max_seq_length). Not a dependency of
bert-jax: docs/finetuning.md compares its dev accuracy with ours.

  python tests/tools/hf_finetune_sst2.py --model=HF_FOLDER --data_dir=GLUE_DIR \
      --steps=600 --batch_size=32 --max_seq_length=64 --learning_rate=5e-5 [--padding=longest]
"""

import argparse
import csv
import json
import sys
import time

import numpy as np

try:
    import torch
    from transformers import BertForSequenceClassification, BertTokenizerFast, get_linear_schedule_with_warmup
except ImportError as e:  # one line naming the extra, exit status 2, as the race drivers say it
    print(
        f"hf_finetune_sst2.py: {e.name} not installed: pip install 'bert-jax[test]' "
        "(the reference libraries: torch==2.13.0, transformers<5)",
        file=sys.stderr,
    )
    sys.exit(2)


def read_sst2(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r[0] for r in rows[1:]], np.array([int(r[1]) for r in rows[1:]])


def encode(tok, texts, max_len):
    """(ids, mask, types), each [n, max_len] int64; `columns` cuts a batch."""
    enc = tok(texts, max_length=max_len, truncation=True, padding="max_length", return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]


def columns(mask, padding):
    """How many columns a batch needs: its longest row (transformers'
    DataCollatorWithPadding, what its users run) or all of them."""
    return int(mask.sum(-1).max()) if padding == "longest" else mask.shape[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data_dir", required=True)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_seq_length", type=int, default=64)
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--warmup_fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train_examples", type=int, default=0, help="> 0: the first N training rows only")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--padding",
        choices=("longest", "max_length"),
        default="longest",
        help="longest: each batch padded to its longest sentence (DataCollatorWithPadding)",
    )
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    tok = BertTokenizerFast.from_pretrained(args.model)
    model = BertForSequenceClassification.from_pretrained(args.model, num_labels=2)
    train_x, train_y = read_sst2(f"{args.data_dir}/SST-2/train.tsv")
    if args.train_examples:
        train_x, train_y = train_x[: args.train_examples], train_y[: args.train_examples]
    dev_x, dev_y = read_sst2(f"{args.data_dir}/SST-2/dev.tsv")
    ids, mask, types = encode(tok, train_x, args.max_seq_length)
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": 0.01,
        },
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=args.learning_rate, eps=1e-6)
    sched = get_linear_schedule_with_warmup(opt, int(args.warmup_fraction * args.steps), args.steps)
    rng = np.random.default_rng(args.seed)
    order = np.concatenate(
        [rng.permutation(len(train_y)) for _ in range(args.steps * args.batch_size // len(train_y) + 1)]
    )
    start = time.time()
    model.train()
    for step in range(args.steps):
        idx = torch.from_numpy(order[step * args.batch_size : (step + 1) * args.batch_size])
        width = columns(mask[idx], args.padding)
        out = model(
            input_ids=ids[idx, :width],
            attention_mask=mask[idx, :width],
            token_type_ids=types[idx, :width],
            labels=torch.from_numpy(train_y)[idx],
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % 10 == 0:
            print(f"step {step} loss {out.loss.item():.4f} {time.time() - start:.0f}s", flush=True)
    train_s = time.time() - start
    model.eval()
    d_ids, d_mask, d_types = encode(tok, dev_x, args.max_seq_length)
    preds = []
    with torch.no_grad():
        for i in range(0, len(dev_y), 128):
            width = columns(d_mask[i : i + 128], args.padding)
            logits = model(
                input_ids=d_ids[i : i + 128, :width],
                attention_mask=d_mask[i : i + 128, :width],
                token_type_ids=d_types[i : i + 128, :width],
            ).logits
            preds.append(logits.argmax(-1).numpy())
    accuracy = float((np.concatenate(preds) == dev_y).mean())
    print(
        json.dumps(
            {
                "task": "sst2",
                "dev": {"accuracy": accuracy},
                "steps": args.steps,
                "train_seconds": round(train_s, 1),
                "padding": args.padding,
            }
        )
    )


if __name__ == "__main__":
    main()
