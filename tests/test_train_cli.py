#!/usr/bin/python3
"""tests/test_train_cli.py: `orthod train` end to end on stories260K (../shared/models).

  * LoRA on prompt/completion JSONL: exit 0, DIR/final holds adapter.gguf, adapter_config.json
    and adapter_model.safetensors; the PEFT tensors are the GGUF ones in HF layout: for q and k
    the delta B A permuted with llama.cpp's convert_hf_to_gguf `permute` (written here with
    numpy, independently of the engine's index arithmetic) equals the GGUF delta;
  * --eval-only on the finished job reports the held-out loss;
  * Ctrl-C (SIGINT) during a run: exit 130, a checkpoint; --resume DIR finishes the job, and
    its final adapter is bit-identical to an uninterrupted run's;
  * the same --out twice is refused; bad flags are usage errors (exit 2) naming the flag;
  * a bad JSONL line fails with a message naming the line.
usage: test_train_cli.py ORTHOD MODELS_DIR       (exit 77 when the model is missing)
"""

import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import numpy as np  # noqa: E402
from llama_ref import GGUF  # noqa: E402

failures = 0


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL " + msg)


def read_safetensors(path):
    with open(path, "rb") as f:
        hl = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(hl))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        assert v["dtype"] == "F32"
        out[k] = np.frombuffer(data[a:b], dtype="<f4").reshape(v["shape"]).astype(np.float64)
    return out


def hf_to_gguf_permute(w, n_head):
    # llama.cpp convert_hf_to_gguf.py LlamaModel.permute
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def main():
    orthod, models = sys.argv[1], sys.argv[2]
    model = os.path.join(models, "stories260K.gguf")
    if not os.path.exists(model):
        print("SKIP: %s is missing" % model)
        return 77
    tmp = tempfile.mkdtemp(prefix="orthod-train-cli-")
    data = os.path.join(tmp, "d.jsonl")
    names = ["Lily", "Tom", "Sue", "Max", "Ben", "Amy"]
    with open(data, "w") as f:
        for i in range(60):
            a, b = names[i % 6], names[(i * 5 + 1) % 6]
            f.write(json.dumps({"prompt": "Once upon a time, %s met %s. " % (a, b),
                                "completion": "%s and %s were friends." % (a, b)}) + "\n")
    base = [orthod, "train", "--model", model, "--data", data, "--lr", "3e-3", "--batch", "8",
            "--epochs", "2", "--lora-rank", "4", "--eval-split", "10", "--threads", "2"]

    # a full run
    out = os.path.join(tmp, "a")
    r = subprocess.run(base + ["--out", out], capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, "lora run: exit %d: %s" % (r.returncode, r.stderr[-500:]))
    check("train: done" in r.stderr and "eval step=" in r.stderr, "summary lines: " + r.stderr[-300:])
    fin = os.path.join(out, "final")
    for fn in ("adapter.gguf", "adapter_config.json", "adapter_model.safetensors"):
        check(os.path.exists(os.path.join(fin, fn)), "missing final/" + fn)
    cfg = json.load(open(os.path.join(fin, "adapter_config.json")))
    check(cfg["r"] == 4 and cfg["lora_alpha"] == 16 and cfg["peft_type"] == "LORA" and
          set(cfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                         "up_proj", "down_proj"}, "adapter_config: %s" % cfg)
    g = GGUF(os.path.join(fin, "adapter.gguf"))
    check(g.kv.get("general.type") == "adapter" and g.kv.get("adapter.type") == "lora",
          "adapter.gguf metadata")
    st = read_safetensors(os.path.join(fin, "adapter_model.safetensors"))
    mg = GGUF(model)
    nh = int(mg.kv["llama.attention.head_count"])
    nkv = int(mg.kv["llama.attention.head_count_kv"])
    hfmod = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}
    n_checked = 0
    for l in range(int(mg.kv["llama.block_count"])):
        for gn, hn in hfmod.items():
            A = g.array("blk.%d.%s.weight.lora_a" % (l, gn))      # (r, in)
            B = g.array("blk.%d.%s.weight.lora_b" % (l, gn))      # (out, r)
            pa = st["base_model.model.model.layers.%d.%s.lora_A.weight" % (l, hn)]
            pb = st["base_model.model.model.layers.%d.%s.lora_B.weight" % (l, hn)]
            check(np.array_equal(pa, A), "layer %d %s: lora_A differs" % (l, gn))
            d_hf = pb @ pa
            if gn == "attn_q":
                d_hf = hf_to_gguf_permute(d_hf, nh)
            elif gn == "attn_k":
                d_hf = hf_to_gguf_permute(d_hf, nkv)
            check(np.allclose(d_hf, B @ A, rtol=0, atol=1e-12), "layer %d %s: PEFT delta is not "
                  "the GGUF delta in HF layout" % (l, gn))
            n_checked += 1
    check(n_checked == 35, "checked %d modules" % n_checked)

    # evaluation of the finished job
    r = subprocess.run([orthod, "train", "--resume", out, "--eval-only"], capture_output=True,
                       text=True, timeout=120)
    check(r.returncode == 0 and "eval_loss=" in r.stdout, "eval-only: %s %s" % (r.stdout, r.stderr))

    # the same --out again is refused
    r = subprocess.run(base + ["--out", out], capture_output=True, text=True, timeout=60)
    check(r.returncode == 2 and "already holds a job" in r.stderr, "reuse of --out: " + r.stderr)

    # Ctrl-C, then --resume: the same adapter as the uninterrupted run
    out_b = os.path.join(tmp, "b")
    p = subprocess.Popen(base + ["--out", out_b, "--no-progress"], stderr=subprocess.PIPE, text=True)
    err = ""
    deadline = time.time() + 120
    while time.time() < deadline:
        line = p.stderr.readline()
        err += line
        if line.startswith("step=3/"):
            p.send_signal(signal.SIGINT)
            break
        if not line:
            break
    rest = p.communicate(timeout=120)[1]
    err += rest
    check(p.returncode == 130, "SIGINT: exit %s: %s" % (p.returncode, err[-400:]))
    check("--resume" in err, "SIGINT message names --resume")
    ck = [d for d in os.listdir(out_b) if d.startswith("checkpoint-")]
    check(len(ck) == 1, "checkpoint after SIGINT: %s" % ck)
    r = subprocess.run([orthod, "train", "--resume", out_b], capture_output=True, text=True,
                       timeout=300)
    check(r.returncode == 0, "resume: exit %d: %s" % (r.returncode, r.stderr[-400:]))
    a1 = open(os.path.join(fin, "adapter_model.safetensors"), "rb").read()
    b1 = open(os.path.join(out_b, "final", "adapter_model.safetensors"), "rb").read()
    check(a1 == b1, "resumed run's adapter differs from the uninterrupted run's")

    # usage errors and data errors
    r = subprocess.run([orthod, "train", "--model", model, "--data", data, "--out",
                        os.path.join(tmp, "c"), "--lora-rank", "0"], capture_output=True, text=True)
    check(r.returncode == 2 and "--lora-rank" in r.stderr, "bad rank: " + r.stderr)
    r = subprocess.run([orthod, "train", "--model", model, "--data", data, "--out",
                        os.path.join(tmp, "d"), "--lora-targets", "q,zz"], capture_output=True,
                       text=True)
    check(r.returncode == 2 and "--lora-targets" in r.stderr, "bad targets: " + r.stderr)
    bad = os.path.join(tmp, "bad.jsonl")
    with open(bad, "w") as f:
        f.write('{"prompt": "a", "completion": "b"}\n{"prompt": 3}\n')
    r = subprocess.run([orthod, "train", "--model", model, "--data", bad, "--out",
                        os.path.join(tmp, "e")], capture_output=True, text=True)
    check(r.returncode == 1 and "bad.jsonl line 2" in r.stderr, "bad line: " + r.stderr)

    # the project's own model (models/orthod-5m-f16.gguf) loads and continues a prompt as
    # llama.cpp does (greedy text recorded from llama.cpp b10472 with the same file)
    own = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models",
                       "orthod-5m-f16.gguf")
    r = subprocess.run([orthod, "generate", "--model", own, "--prompt", "The President said that",
                        "--temperature", "0", "--max-tokens", "12", "--quiet"], capture_output=True,
                       text=True, timeout=120)
    check(r.returncode == 0 and r.stdout.startswith(" the first time of the United States of the"),
          "orthod-5m greedy text: %r %s" % (r.stdout, r.stderr[-300:]))

    print("%d passed, %d failed" % (1 if failures == 0 else 0, 1 if failures else 0))
    if failures == 0:
        subprocess.run(["rm", "-rf", tmp])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
