#!/usr/bin/python3
"""bench/sft_study.py: the small-LLM SFT study's qualitative findings (../shared/papers
section 4, "Unveiling the Secret Recipe") reproduced on the project's own pretrained model
(models/README.md), with `orthod train` doing every run.

Data: a synthetic instruction mixture of three skills, prompt/completion JSONL, made here
with a fixed seed:
  arithmetic   "Q: What is 23 plus 58?\\nA:"            -> " 81"
  strings      "Q: Spell 'house' backwards.\\nA:"        -> " esuoh"  (and capitals)
  knowledge    200 invented facts ("The capital of Varnel is Oskit."): training holds each
               fact as a statement and 80% of them as questions; the held-out questions ask
               the other 20% (the model must use what it read)
Held-out: fresh arithmetic and string questions plus the held-out knowledge questions;
the score is the held-out loss (mean CE over completion tokens), overall and per skill.

Runs: full fine-tuning with an equal sample budget, effective batch x learning rate (and a
few schedule/warmup variants), AdamW (0.9, 0.95), wd 0, clip 1.0. For each run the mean
gradient norm and mean loss over the first 10% of steps are the early signals; the study's
claims: a larger batch with a low LR wins at equal samples; warmup and decay matter little;
lower early grad norm and higher early loss predict a better final score (Spearman).

usage: sft_study.py ORTHOD MODEL.gguf WORK_DIR [--budget 4096] [--threads 2] [--quick]
Prints a markdown table and the correlations (docs/fine-tuning.md quotes it).
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys

SYL = ["ka", "lo", "mi", "ren", "tas", "vo", "del", "pra", "sun", "tik", "bar", "nel", "os",
       "quin", "ta", "wes", "dor", "fal", "gim", "hap"]
WORDS = ["house", "river", "green", "table", "mountain", "letter", "window", "garden", "silver",
         "market", "paper", "summer", "doctor", "engine", "island", "thunder", "pencil", "forest",
         "candle", "bridge", "orange", "planet", "basket", "winter", "castle", "ticket"]


def name(rng, n):
    return "".join(rng.choice(SYL) for _ in range(n)).capitalize()


def make_data(work, seed=7):
    rng = random.Random(seed)
    facts = []
    seen = set()
    while len(facts) < 200:
        c, k = name(rng, 2), name(rng, 2)
        if c in seen or k in seen:
            continue
        seen.update((c, k))
        facts.append((c, k))
    known = facts[:160]
    held_facts = facts[160:]

    def arith(r):
        a, b = r.randint(2, 99), r.randint(2, 99)
        if r.random() < 0.5:
            return "Q: What is %d plus %d?\nA:" % (a, b), " %d" % (a + b)
        a, b = max(a, b), min(a, b)
        return "Q: What is %d minus %d?\nA:" % (a, b), " %d" % (a - b)

    def strings(r):
        w = r.choice(WORDS)
        if r.random() < 0.5:
            return "Q: Spell '%s' backwards.\nA:" % w, " " + w[::-1]
        return "Q: Write '%s' in capitals.\nA:" % w, " " + w.upper()

    def question(c, k):
        return "Q: What is the capital of %s?\nA:" % c, " %s" % k

    train = []
    for c, k in facts:   # statements of every fact
        train.append(("knowledge", "Fact:", " The capital of %s is %s." % (c, k)))
    for _ in range(3):
        for c, k in known:
            train.append(("knowledge",) + question(c, k))
    for _ in range(1200):
        train.append(("arithmetic",) + arith(rng))
        train.append(("strings",) + strings(rng))
    rng.shuffle(train)
    held = [("arithmetic",) + arith(rng) for _ in range(200)] + \
        [("strings",) + strings(rng) for _ in range(200)] + \
        [("knowledge",) + question(c, k) for c, k in held_facts]
    paths = {}

    def dump(path, rows):
        with open(path, "w") as f:
            for _, p, c in rows:
                f.write(json.dumps({"prompt": p, "completion": c}) + "\n")

    paths["train"] = os.path.join(work, "sft-train.jsonl")
    dump(paths["train"], train)
    paths["held"] = os.path.join(work, "sft-heldout.jsonl")
    dump(paths["held"], held)
    for skill in ("arithmetic", "strings", "knowledge"):
        paths[skill] = os.path.join(work, "sft-heldout-%s.jsonl" % skill)
        dump(paths[skill], [h for h in held if h[0] == skill])
    return paths, len(train)


def run(a, paths, tag, batch, lr, sched, warmup_frac):
    out = os.path.join(a.work, "run-" + tag)
    subprocess.run(["rm", "-rf", out])
    steps = max(1, a.budget // batch)
    warm = int(round(warmup_frac * steps))
    cmd = [a.orthod, "train", "--model", a.model, "--data", paths["train"],
           "--eval-data", paths["held"], "--method", "full", "--batch", str(batch), "--lr", str(lr),
           "--schedule", sched, "--warmup-steps", str(warm), "--max-steps", str(steps),
           "--micro-tokens", "2048", "--max-seq-len", "128", "--chat-template", "plain",
           "--threads", str(a.threads), "--seed", "3", "--out", out, "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("sft_study: run %s failed:\n%s" % (tag, r.stderr[-2000:]))
    losses, gnorms = [], []
    for line in r.stderr.splitlines():
        m = re.match(r"step=\d+/\d+ .*loss=([0-9.]+) grad_norm=([0-9.]+)", line)
        if m:
            losses.append(float(m.group(1)))
            gnorms.append(float(m.group(2)))
    ev = [float(x) for x in re.findall(r"eval step=\d+ eval_loss=([0-9.]+)", r.stderr)]
    k = max(1, len(losses) // 10)
    res = dict(tag=tag, batch=batch, lr=lr, sched=sched, warmup=warm, steps=steps,
               early_gnorm=sum(gnorms[:k]) / k, early_loss=sum(losses[:k]) / k,
               final_train=losses[-1], heldout=ev[-1])
    for skill in ("arithmetic", "strings", "knowledge"):
        r2 = subprocess.run([a.orthod, "train", "--resume", out, "--eval-only", "--eval-data",
                             paths[skill], "--threads", str(a.threads)], capture_output=True, text=True)
        m = re.search(r"eval_loss=([0-9.]+)", r2.stdout)
        res[skill] = float(m.group(1)) if m else float("nan")
    return res


def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for t in range(i, j + 1):
            r[order[t]] = (i + j) / 2.0
        i = j + 1
    return r


def spearman(x, y):
    rx, ry = ranks(x), ranks(y)
    n = len(x)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx) ** 0.5
    vy = sum((b - my) ** 2 for b in ry) ** 0.5
    return cov / (vx * vy) if vx and vy else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("orthod")
    ap.add_argument("model")
    ap.add_argument("work")
    ap.add_argument("--budget", type=int, default=4096, help="training samples per run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="a 4-run smoke version")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    paths, n_train = make_data(a.work)
    grid = [(b, lr, "constant", 0.0) for b in (8, 32, 128) for lr in (1e-4, 3e-4, 1e-3, 3e-3)]
    grid += [(32, 3e-4, "cosine", 0.0), (32, 3e-4, "constant", 0.05), (32, 3e-4, "cosine", 0.05),
             (128, 1e-3, "cosine", 0.05)]
    if a.quick:
        grid = [(8, 1e-3, "constant", 0.0), (32, 3e-4, "constant", 0.0),
                (32, 3e-4, "cosine", 0.05), (128, 1e-3, "constant", 0.0)]
    results = []
    for b, lr, sc, wf in grid:
        tag = "b%d-lr%g-%s-w%g" % (b, lr, sc, wf)
        res = run(a, paths, tag, b, lr, sc, wf)
        results.append(res)
        print("%-28s held-out %.4f (arith %.3f strings %.3f knowledge %.3f) early gnorm %.3f "
              "early loss %.3f" % (tag, res["heldout"], res["arithmetic"], res["strings"],
                                   res["knowledge"], res["early_gnorm"], res["early_loss"]),
              flush=True)
    print("\n| batch | lr | schedule | warmup steps | steps | early grad norm | early loss | "
          "held-out loss | arithmetic | strings | knowledge |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(results, key=lambda r: r["heldout"]):
        print("| %d | %g | %s | %d | %d | %.3f | %.3f | %.4f | %.3f | %.3f | %.3f |" % (
            r["batch"], r["lr"], r["sched"], r["warmup"], r["steps"], r["early_gnorm"],
            r["early_loss"], r["heldout"], r["arithmetic"], r["strings"], r["knowledge"]))
    h = [r["heldout"] for r in results]
    print("\nSpearman(early grad norm, held-out loss) = %.2f  (the study: positive, lower "
          "norm -> lower loss)" % spearman([r["early_gnorm"] for r in results], h))
    print("Spearman(early train loss, held-out loss) = %.2f  (the study: negative, higher "
          "early loss -> lower final loss)" % spearman([r["early_loss"] for r in results], h))
    print("runs %d, training samples per run %d (of %d), held-out samples 440" %
          (len(results), a.budget, n_train))


if __name__ == "__main__":
    sys.exit(main())
