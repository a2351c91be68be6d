#!/usr/bin/python3
"""bench/train_torch.py: the PyTorch side of bench/train-vs-torch.sh: training steps of a
Llama of a named shape on the CPU (Debian python3-torch), float32, the same work as one
`orthod train` step: a batch of B samples of T tokens, causal attention within each sample,
mean cross-entropy over every next token, backward, global-norm clipping, AdamW.

  --method lora   rank-r adapters (alpha 16) on q,k,v,o,gate,up,down; the base is frozen
  --method full   every weight trained
Prints one line per step (tokens/s) and, at the end, the median and the peak RSS.

usage: train_torch.py --shape stories15M --method lora --batch 8 --seq 256 --steps 6 --threads 2
"""

import argparse
import math
import resource
import statistics
import time

import torch
import torch.nn.functional as F

SHAPES = {
    "stories15M": dict(dim=288, layers=6, heads=6, kv_heads=6, ffn=768, vocab=32000),
    "stories110M": dict(dim=768, layers=12, heads=12, kv_heads=12, ffn=2048, vocab=32000),
    "tiny": dict(dim=64, layers=2, heads=4, kv_heads=2, ffn=192, vocab=300),
}


class LoRALinear(torch.nn.Module):
    def __init__(self, n_in, n_out, r, alpha):
        super().__init__()
        self.base = torch.nn.Linear(n_in, n_out, bias=False)
        self.r = r
        if r:
            self.a = torch.nn.Parameter(torch.empty(r, n_in).uniform_(-1 / math.sqrt(n_in), 1 / math.sqrt(n_in)))
            self.b = torch.nn.Parameter(torch.zeros(n_out, r))
            self.scale = alpha / r

    def forward(self, x):
        y = self.base(x)
        if self.r:
            y = y + (x @ self.a.t()) @ self.b.t() * self.scale
        return y


class RMSNorm(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.w


def rope(x, cos, sin):
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)


class Block(torch.nn.Module):
    def __init__(self, s, r, alpha):
        super().__init__()
        C, H, KV, FF = s["dim"], s["heads"], s["kv_heads"], s["ffn"]
        hs = C // H
        self.H, self.KV, self.hs = H, KV, hs
        self.n1, self.n2 = RMSNorm(C), RMSNorm(C)
        self.q, self.k = LoRALinear(C, H * hs, r, alpha), LoRALinear(C, KV * hs, r, alpha)
        self.v, self.o = LoRALinear(C, KV * hs, r, alpha), LoRALinear(H * hs, C, r, alpha)
        self.g, self.u = LoRALinear(C, FF, r, alpha), LoRALinear(C, FF, r, alpha)
        self.d = LoRALinear(FF, C, r, alpha)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        h = self.n1(x)
        q = self.q(h).view(B, T, self.H, self.hs)
        k = self.k(h).view(B, T, self.KV, self.hs)
        v = self.v(h).view(B, T, self.KV, self.hs)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if self.KV != self.H:
            k = k.repeat_interleave(self.H // self.KV, 1)
            v = v.repeat_interleave(self.H // self.KV, 1)
        # (torch 1.13, Debian 12's, has no scaled_dot_product_attention)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hs))
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        a = torch.softmax(att, -1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(B, T, C))
        h = self.n2(x)
        return x + self.d(F.silu(self.g(h)) * self.u(h))


class Llama(torch.nn.Module):
    def __init__(self, s, r, alpha):
        super().__init__()
        self.emb = torch.nn.Embedding(s["vocab"], s["dim"])
        self.blocks = torch.nn.ModuleList(Block(s, r, alpha) for _ in range(s["layers"]))
        self.norm = RMSNorm(s["dim"])
        self.out = torch.nn.Linear(s["dim"], s["vocab"], bias=False)
        hs = s["dim"] // s["heads"]
        inv = 10000.0 ** (-torch.arange(0, hs, 2, dtype=torch.float32) / hs)
        self.inv = inv

    def forward(self, tok):
        T = tok.shape[1]
        th = torch.arange(T, dtype=torch.float32)[:, None] * self.inv[None, :]
        cos, sin = th.cos()[None, :, None, :], th.sin()[None, :, None, :]
        x = self.emb(tok)
        for b in self.blocks:
            x = b(x, cos, sin)
        return self.out(self.norm(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="stories15M")
    ap.add_argument("--method", default="lora", choices=["lora", "full"])
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    s = SHAPES[a.shape]
    lora = a.method == "lora"
    m = Llama(s, a.rank if lora else 0, 16.0)
    for n, p in m.named_parameters():
        p.requires_grad_(not lora or n.endswith(".a") or n.endswith(".b"))
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    tok = torch.randint(0, s["vocab"], (a.batch, a.seq + 1))
    rates = []
    for step in range(a.steps):
        t0 = time.perf_counter()
        logits = m(tok[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, s["vocab"]), tok[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        rates.append(a.batch * a.seq / dt)
        print("torch step=%d tokens_per_s=%.0f loss=%.4f" % (step + 1, rates[-1], loss.item()),
              flush=True)
    med = statistics.median(rates[1:]) if len(rates) > 1 else rates[0]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("torch median_tokens_per_s=%.0f peak_rss_mib=%.0f trainable=%d" %
          (med, rss, sum(p.numel() for p in params)))


if __name__ == "__main__":
    main()
