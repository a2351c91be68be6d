#!/usr/bin/python3
"""tests/test_train_grads.py: the training engine's gradients and optimizer step against
torch (Debian python3-torch, CPU, autograd in float64).

For each case, tests/train_grads (C) runs one training step of the engine on a few samples
of different lengths, packed into several micro-batches (so accumulation and the
normalization by the effective batch's supervised tokens are exercised), and dumps the
trainable tensors before the step, their gradients, and the tensors after the step. This
script rebuilds the model in torch from the GGUF file (tests/ref/llama_ref.py's reader; no
project code), runs each sample on its own (no packing), and checks:
  * the loss (mean CE over all supervised tokens of the batch) and every gradient:
    per tensor, max |engine - torch| / max |torch| <= GRAD_TOL;
  * one torch.optim.AdamW step (float32, after torch.nn.utils.clip_grad_norm_ when the case
    clips) from the same weights and gradients equals the engine's new weights:
    max |engine - torch| / max |torch| <= ADAM_TOL.
Cases: stories260K (../shared/models) and a random GQA model (4 heads, 2 KV heads), LoRA
(every target, rsLoRA, a subset of targets) and full fine-tuning (tied and untied output),
both rotary layouts, activation recomputation.

usage: test_train_grads.py --train-grads BIN --mkmodel BIN --models DIR [--keep DIR]
Exit 77 (skip) when torch or a model file is missing.
"""

import argparse
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))

try:
    import numpy as np
    import torch
except ImportError as e:  # the test's input is missing: skip, never pass
    print("SKIP: %s (install python3-torch and python3-numpy)" % e)
    sys.exit(77)

from llama_ref import GGUF  # noqa: E402

# measured max errors over these cases: gradients 1.2e-5 (a LoRA A of stories260K; most
# tensors ~1e-6), AdamW 1.2e-7 (F32 engine vs float64 torch); the bound is 1e-4
GRAD_TOL = 5e-5
ADAM_TOL = 1e-6

LIN = [("attn_q", "q"), ("attn_k", "k"), ("attn_v", "v"), ("attn_output", "o"),
       ("ffn_gate", "gate"), ("ffn_up", "up"), ("ffn_down", "down")]


def t64(a):
    return torch.tensor(np.ascontiguousarray(a), dtype=torch.float64)


class TorchLlama:
    """The Llama forward in float64 with optional LoRA, parameters as leaf tensors."""

    def __init__(self, g, out, neox):
        kv = g.kv
        self.C = int(kv["llama.embedding_length"])
        self.L = int(kv["llama.block_count"])
        self.NH = int(kv["llama.attention.head_count"])
        self.NKV = int(kv.get("llama.attention.head_count_kv", self.NH))
        self.HS = self.C // self.NH
        self.n_rot = int(kv.get("llama.rope.dimension_count", self.HS))
        self.base = float(kv.get("llama.rope.freq_base", 10000.0))
        self.eps = float(kv.get("llama.attention.layer_norm_rms_epsilon", 1e-5))
        self.neox = neox
        self.scale = float(out.kv["train.lora_scale"])
        self.params = {}   # name -> leaf tensor (trainable)
        names = [n[5:] for n in out.tensors if n.startswith("init.")]
        self.trainable = names
        for n in names:
            self.params[n] = t64(out.array("init." + n)).requires_grad_(True)
        self.frozen = {}
        for n in g.tensors:
            if n not in self.params:
                self.frozen[n] = t64(g.array(n))

    def w(self, name):
        if name in self.params:
            return self.params[name]
        return self.frozen[name]

    def has(self, name):
        return name in self.params or name in self.frozen

    def norm_w(self, name):
        v = self.w(name)
        return v.reshape(-1)

    def lin(self, x, name):
        y = x @ self.w(name).T
        a = name + ".lora_a"
        if a in self.params:
            A, B = self.params[a], self.params[name + ".lora_b"]
            y = y + self.scale * ((x @ A.T) @ B.T)
        return y

    def rms(self, x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x, nh):
        T = x.shape[0]
        x = x.reshape(T, nh, self.HS).clone()
        half = self.n_rot // 2
        pos = torch.arange(T, dtype=torch.float64)[:, None]
        inv = torch.tensor([self.base ** (-2.0 * i / self.n_rot) for i in range(half)],
                           dtype=torch.float64)[None, :]
        th = pos * inv
        c, s = torch.cos(th)[:, None, :], torch.sin(th)[:, None, :]
        if self.neox:
            i0 = list(range(half))
            i1 = [i + half for i in range(half)]
        else:
            i0 = [2 * i for i in range(half)]
            i1 = [2 * i + 1 for i in range(half)]
        x0, x1 = x[:, :, i0], x[:, :, i1]
        r0, r1 = x0 * c - x1 * s, x0 * s + x1 * c
        y = x.clone()
        y[:, :, i0] = r0
        y[:, :, i1] = r1
        return y.reshape(T, nh * self.HS)

    def forward(self, tokens):
        T = len(tokens)
        x = self.w("token_embd.weight")[torch.tensor(tokens)]
        grp = self.NH // self.NKV
        mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
        for l in range(self.L):
            p = "blk.%d." % l
            h = self.rms(x, self.norm_w(p + "attn_norm.weight"))
            q = self.rope(self.lin(h, p + "attn_q.weight"), self.NH)
            k = self.rope(self.lin(h, p + "attn_k.weight"), self.NKV)
            v = self.lin(h, p + "attn_v.weight")
            q = q.reshape(T, self.NH, self.HS).transpose(0, 1)
            k = k.reshape(T, self.NKV, self.HS).transpose(0, 1).repeat_interleave(grp, 0)
            v = v.reshape(T, self.NKV, self.HS).transpose(0, 1).repeat_interleave(grp, 0)
            att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.HS) + mask, -1) @ v
            att = att.transpose(0, 1).reshape(T, self.NH * self.HS)
            x = x + self.lin(att, p + "attn_output.weight")
            h = self.rms(x, self.norm_w(p + "ffn_norm.weight"))
            gt = self.lin(h, p + "ffn_gate.weight")
            up = self.lin(h, p + "ffn_up.weight")
            x = x + self.lin(torch.nn.functional.silu(gt) * up, p + "ffn_down.weight")
        x = self.rms(x, self.norm_w("output_norm.weight"))
        out = "output.weight" if self.has("output.weight") else "token_embd.weight"
        return x @ self.w(out).T


def read_samples(path):
    samples = []
    with open(path) as f:
        for line in f:
            a, b = line.strip().split(";")
            samples.append(([int(x) for x in a.split(",")], [int(x) for x in b.split(",")]))
    return samples


def make_samples(path, n_vocab, rng, lens):
    with open(path, "w") as f:
        for i, n in enumerate(lens):
            toks = [int(x) for x in rng.integers(1, n_vocab, size=n)]
            # supervise a suffix (a "completion"), or every token
            if i % 2 == 0:
                cut = n // 3
                mask = [0] * cut + [1] * (n - cut)
            else:
                mask = [0] + [1] * (n - 1)
            f.write(",".join(map(str, toks)) + ";" + ",".join(map(str, mask)) + "\n")


def rel(a, b):
    d = np.max(np.abs(a - b))
    m = max(np.max(np.abs(b)), 1e-30)
    return float(d / m)


def check_case(args, name, model, extra, lens, rng, tmp):
    samples_path = os.path.join(tmp, name + ".samples")
    out_path = os.path.join(tmp, name + ".out.gguf")
    g = GGUF(model)
    n_vocab = g.tensors["token_embd.weight"].ne[1]
    make_samples(samples_path, n_vocab, rng, lens)
    cmd = [args.train_grads, model, samples_path, out_path] + extra
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        print("FAIL %s: %s\n%s" % (name, " ".join(cmd), r.stderr))
        return False
    if "--scratch-out" in extra:   # the tool built (and trained) a tied model of its own
        g = GGUF(extra[extra.index("--scratch-out") + 1])
        assert "output.weight" not in g.tensors
    out = GGUF(out_path)
    neox = bool(out.kv.get("train.neox", False))
    tm = TorchLlama(g, out, neox)
    samples = read_samples(samples_path)
    n_sup = sum(sum(m[1:]) for _, m in samples)
    total = 0.0
    for toks, m in samples:
        logits = tm.forward(toks)
        tgt = torch.tensor(toks[1:])
        ce = torch.nn.functional.cross_entropy(logits[:-1], tgt, reduction="none")
        total = total + (ce * torch.tensor(m[1:], dtype=torch.float64)).sum()
    loss = total / n_sup
    loss.backward()
    ok = True
    eng_loss = float(out.kv["train.loss"])
    le = abs(eng_loss - loss.item()) / abs(loss.item())
    worst = 0.0
    for n in tm.trainable:
        ref = tm.params[n].grad.numpy()
        got = out.array("grad." + n)
        e = rel(got, ref)
        worst = max(worst, e)
        if not e <= GRAD_TOL:
            print("FAIL %s: gradient of %s: rel err %.3g > %.1g" % (name, n, e, GRAD_TOL))
            ok = False
    if not le <= GRAD_TOL:
        print("FAIL %s: loss %.9g vs torch %.9g" % (name, eng_loss, loss.item()))
        ok = False
    # one AdamW step in float32 from the same weights and the engine's gradients
    lr, wd = float(out.kv["train.lr"]), float(out.kv["train.wd"])
    b1, b2, eps = float(out.kv["train.beta1"]), float(out.kv["train.beta2"]), float(out.kv["train.eps"])
    clip = float(out.kv["train.clip"])
    decay, no_decay = [], []
    ps = {}
    for n in tm.trainable:
        p = torch.tensor(out.array("init." + n), dtype=torch.float32).requires_grad_(True)
        p.grad = torch.tensor(out.array("grad." + n), dtype=torch.float32)
        ps[n] = p
        (no_decay if n.endswith("norm.weight") else decay).append(p)
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(list(ps.values()), clip)
    gn = math.sqrt(sum(float((out.array("grad." + n) ** 2).sum()) for n in tm.trainable))
    ge = abs(gn - float(out.kv["train.grad_norm"])) / gn
    if not ge <= 1e-5:
        print("FAIL %s: grad norm %.9g vs %.9g" % (name, float(out.kv["train.grad_norm"]), gn))
        ok = False
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(b1, b2), eps=eps, foreach=False)
    opt.step()
    aw = 0.0
    for n in tm.trainable:
        e = rel(out.array("post." + n), ps[n].detach().numpy().astype(np.float64))
        aw = max(aw, e)
        if not e <= ADAM_TOL:
            print("FAIL %s: AdamW step of %s: rel err %.3g > %.1g" % (name, n, e, ADAM_TOL))
            ok = False
    print("%s %s: loss %.6f (torch %.6f), %d tensors, max grad rel err %.2e, adamw %.2e"
          % ("ok  " if ok else "FAIL", name, eng_loss, loss.item(), len(tm.trainable), worst, aw))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-grads", required=True)
    ap.add_argument("--mkmodel", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--keep")
    args = ap.parse_args()
    torch.set_num_threads(1)
    s260 = os.path.join(args.models, "stories260K.gguf")
    if not os.path.exists(s260):
        print("SKIP: %s is missing" % s260)
        return 77
    rng = np.random.default_rng(7)
    tmp = args.keep or tempfile.mkdtemp(prefix="orthod-train-grads-")
    os.makedirs(tmp, exist_ok=True)
    gqa = os.path.join(tmp, "gqa.gguf")
    r = subprocess.run([args.mkmodel, gqa, "--shape", "dim=64,layers=2,heads=4,kv_heads=2,"
                        "ffn=96,vocab=300", "--dtype", "f32", "--seed", "3", "--std", "0.1",
                        "--norm-std", "0.2"], capture_output=True, text=True)
    if r.returncode != 0:
        print("FAIL mkmodel: %s" % r.stderr)
        return 1
    lens = [17, 9, 30, 5, 12]       # 73 tokens: several micro-batches of 32
    cases = [
        ("260k-lora-all", s260, ["--method", "lora", "--rank", "4", "--alpha", "8",
                                 "--micro-tokens", "32", "--wd", "0.1"]),
        ("260k-full", s260, ["--method", "full", "--micro-tokens", "32", "--wd", "0.1",
                             "--clip", "0.5"]),
        ("gqa-lora-rslora-qv", gqa, ["--method", "lora", "--rank", "3", "--alpha", "5",
                                     "--rslora", "--targets", "q,v,down", "--micro-tokens", "40"]),
        ("gqa-lora-neox-recompute", gqa, ["--method", "lora", "--rank", "8", "--alpha", "16",
                                          "--rope", "neox", "--recompute", "--micro-tokens", "32",
                                          "--clip", "0.01"]),
        ("gqa-full-neox", gqa, ["--method", "full", "--rope", "neox", "--micro-tokens", "64",
                                "--threads", "1"]),
        ("gqa-full-recompute", gqa, ["--method", "full", "--recompute", "--micro-tokens", "30",
                                     "--wd", "0.01"]),
        ("tied-full", gqa, ["--method", "full", "--micro-tokens", "32", "--scratch",
                            "dim=32,layers=2,heads=4,kv_heads=1,ffn=64",
                            "--scratch-out", os.path.join(tmp, "tied.gguf")]),
        ("tied-lora", gqa, ["--method", "lora", "--micro-tokens", "32", "--scratch",
                            "dim=32,layers=2,heads=4,kv_heads=1,ffn=64",
                            "--scratch-out", os.path.join(tmp, "tied2.gguf")]),
    ]
    ok = True
    for name, model, extra in cases:
        ok &= check_case(args, name, model, extra, lens, rng, tmp)
    print("%d passed, %d failed" % ((len(cases), 0) if ok else (0, len(cases))))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
