#!/usr/bin/python3
"""models/train_tokenizer.py: trains the project model's tokenizer and writes it as a
vocab-only GGUF file in llama.cpp's SentencePiece-BPE ("llama") format.

The vocabulary (VOCAB tokens):
  0 <unk>, 1 <s>, 2 </s>          control
  3..258  <0x00>..<0xFF>          byte fallback (any byte, so no text is unencodable)
  then the characters seen at least MIN_CHAR times, then BPE merges
Training is classic BPE over the word counts of the corpus, SentencePiece style: a space
becomes U+2581 and starts the word it precedes (and the text gets one in front), so merges
never cross a word start. Merge k gets score -k: llama.cpp's SPM tokenizer (and orthod's,
which matches it) repeatedly merges the adjacent pair whose joined text is in the vocabulary
with the highest score, which replays the merges in training order.
Newlines are not merged (they tokenize as <0x0A>). Deterministic: ties break on the pair's
text. Pure Python (no numpy), a few minutes on the 8 MB corpus.

usage: train_tokenizer.py CORPUS.txt OUT.gguf [--vocab 4096]
"""

import argparse
import collections
import struct
import sys

SP = "\u2581"
MIN_CHAR = 50


def word_counts(path):
    counts = collections.Counter()
    with open(path, encoding="utf-8") as f:
        for line in f:
            for w in line.split():
                counts[SP + w] += 1
    return counts


def train(counts, vocab_size):
    chars = collections.Counter()
    for w, c in counts.items():
        for ch in w:
            chars[ch] += c
    base = sorted((ch for ch, c in chars.items() if c >= MIN_CHAR), key=lambda ch: (-chars[ch], ch))
    n_merges = vocab_size - 3 - 256 - len(base)
    if n_merges < 0:
        raise SystemExit("vocab too small for %d base characters" % len(base))
    # words as symbol lists (characters outside the base set stay single symbols: they will
    # become bytes at tokenization time and never take part in a merge)
    base_set = set(base)
    words = [(list(w), c) for w, c in counts.items()]
    pairs = collections.Counter()
    where = collections.defaultdict(set)   # pair -> indices of words containing it
    for i, (sy, c) in enumerate(words):
        for a, b in zip(sy, sy[1:]):
            if a in base_set and b in base_set:
                pairs[(a, b)] += c
                where[(a, b)].add(i)
    merges = []
    vocab_set = set(base)
    while len(merges) < n_merges and pairs:
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        (a, b), cnt = best
        if cnt < 2:
            break
        ab = a + b
        merges.append(ab)
        vocab_set.add(ab)
        for i in list(where.pop((a, b), ())):
            sy, c = words[i]
            # remove this word's old pairs, merge, add its new pairs
            for p in zip(sy, sy[1:]):
                if p in pairs:
                    pairs[p] -= c
                    if pairs[p] <= 0:
                        del pairs[p]
                    where[p].discard(i)
            j, out = 0, []
            while j < len(sy):
                if j + 1 < len(sy) and sy[j] == a and sy[j + 1] == b:
                    out.append(ab)
                    j += 2
                else:
                    out.append(sy[j])
                    j += 1
            words[i] = (out, c)
            for p in zip(out, out[1:]):
                if p[0] in vocab_set and p[1] in vocab_set:
                    pairs[p] += c
                    where[p].add(i)
        pairs.pop((a, b), None)
    return base, merges


# --- a minimal GGUF v3 writer (metadata only) --------------------------------------------

T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def write_gguf(path, kv):
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)))
    for key, (typ, val) in kv.items():
        out += gguf_str(key) + struct.pack("<I", typ)
        if typ == T_STRING:
            out += gguf_str(val)
        elif typ == T_UINT32:
            out += struct.pack("<I", val)
        elif typ == T_BOOL:
            out += struct.pack("<B", 1 if val else 0)
        elif typ == T_FLOAT32:
            out += struct.pack("<f", val)
        elif typ == T_ARRAY:
            et, items = val
            out += struct.pack("<IQ", et, len(items))
            for it in items:
                if et == T_STRING:
                    out += gguf_str(it)
                elif et == T_FLOAT32:
                    out += struct.pack("<f", it)
                elif et == T_INT32:
                    out += struct.pack("<i", it)
    with open(path, "wb") as f:
        f.write(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, default=4096)
    a = ap.parse_args()
    counts = word_counts(a.corpus)
    base, merges = train(counts, a.vocab)
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % i for i in range(256)] + base + merges
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-1e6 - i for i in range(len(base))] + \
        [-float(i) for i in range(len(merges))]
    types = [2, 3, 3] + [6] * 256 + [1] * (len(base) + len(merges))
    kv = {
        "general.architecture": (T_STRING, "llama"),
        "general.name": (T_STRING, "orthod-bpe-%d" % len(tokens)),
        "tokenizer.ggml.model": (T_STRING, "llama"),
        "tokenizer.ggml.tokens": (T_ARRAY, (T_STRING, tokens)),
        "tokenizer.ggml.scores": (T_ARRAY, (T_FLOAT32, scores)),
        "tokenizer.ggml.token_type": (T_ARRAY, (T_INT32, types)),
        "tokenizer.ggml.unknown_token_id": (T_UINT32, 0),
        "tokenizer.ggml.bos_token_id": (T_UINT32, 1),
        "tokenizer.ggml.eos_token_id": (T_UINT32, 2),
        "tokenizer.ggml.add_bos_token": (T_BOOL, True),
        "tokenizer.ggml.add_eos_token": (T_BOOL, False),
        "tokenizer.ggml.add_space_prefix": (T_BOOL, True),
    }
    write_gguf(a.out, kv)
    print("train_tokenizer: %d tokens (%d characters, %d merges) -> %s"
          % (len(tokens), len(base), len(merges), a.out))


if __name__ == "__main__":
    sys.exit(main())
