#!/usr/bin/env python3
"""tests/fuzz/make_corpus.py: writes the seed corpora of fuzz_gguf, fuzz_safetensors and
fuzz_hf (corpus/gguf/, corpus/safetensors/, corpus/hf/): a few small valid inputs that reach every branch of
the readers (all metadata types, string arrays, every common tensor dtype, v2 and v3,
a non-default alignment, vocab-only, 4-D tensors; safetensors F32/F16/BF16, metadata,
zero-size tensors; HF config/tokenizer JSON in GPT-2, Llama-3 and SentencePiece styles).
Standard library only; deterministic. Run it from anywhere."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# GGUF value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
       BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}
# ggml type id -> (block elems, block bytes)
DT = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 12: (256, 144), 24: (1, 1),
      26: (1, 4), 28: (1, 8), 30: (1, 2)}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gval(t, v):
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        out = struct.pack("<IQ", et, len(items))
        for it in items:
            out += gval(et, it)
        return out
    return struct.pack(FMT[t], v)


def gguf(kvs, tensors, version=3, align=32):
    """kvs: [(key, type, value)]; tensors: [(name, type, ne list)] with bytes made up."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gstr(k) + struct.pack("<I", t) + gval(t, v)
    off, datas = 0, []
    for name, t, ne in tensors:
        blk, bb = DT[t]
        n = 1
        for d in ne:
            n *= d
        nbytes = n // blk * bb
        out += gstr(name) + struct.pack("<I", len(ne))
        for d in ne:
            out += struct.pack("<Q", d)
        out += struct.pack("<IQ", t, off)
        data = bytes((i * 37 + len(name)) & 0xFF for i in range(nbytes))
        pad = (-nbytes) % align
        datas.append(data + b"\0" * pad)
        off += nbytes + pad
    if tensors:
        out += b"\0" * ((-len(out)) % align)
        out += b"".join(datas)
    return out


def write(sub, name, data):
    d = os.path.join(HERE, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % i for i in range(4)] + \
        ["\u2581the", "\u2581a", "he", "llo", "\u2581Hello", "\u00e9t\u00e9", "\n"]
    all_types = [
        ("general.architecture", STR, "llama"),
        ("general.name", STR, "fuzz-tiny"),
        ("llama.block_count", U32, 1),
        ("llama.context_length", U64, 128),
        ("llama.embedding_length", I32, 32),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("llama.rope.freq_base", F64, 10000.0),
        ("t.u8", U8, 200), ("t.i8", I8, -3), ("t.u16", U16, 60000), ("t.i16", I16, -2),
        ("t.i64", I64, -7), ("t.bool", BOOL, 1),
        ("tokenizer.ggml.model", STR, "llama"),
        ("tokenizer.ggml.tokens", ARR, (STR, toks)),
        ("tokenizer.ggml.scores", ARR, (F32, [-float(i) for i in range(len(toks))])),
        ("tokenizer.ggml.token_type", ARR, (I32, [2, 3, 3, 6, 6, 6, 6] + [1] * 7)),
        ("tokenizer.ggml.add_bos_token", BOOL, 1),
        ("t.arr_bool", ARR, (BOOL, [0, 1, 1])),
        ("t.arr_u64", ARR, (U64, [1, 2**40])),
        ("t.arr_empty", ARR, (STR, [])),
    ]
    write("gguf", "model-tiny-v3", gguf(all_types, [
        ("token_embd.weight", 0, [32, 4]),
        ("blk.0.attn_q.weight", 1, [32, 2]),
        ("blk.0.ffn_up.weight", 8, [64, 2]),
        ("blk.0.ffn_down.weight", 2, [32, 2]),
        ("blk.0.attn_norm.weight", 30, [8]),
        ("output.weight", 12, [256, 1]),
    ]))
    write("gguf", "model-v2-align64", gguf(
        [("general.architecture", STR, "llama"), ("general.alignment", U32, 64)],
        [("a", 0, [3]), ("b.4d", 24, [2, 3, 2, 2]), ("c", 26, [5]), ("d", 28, [1, 1, 1])],
        version=2, align=64))
    merges = ["\u0120 t", "h e", "l l", "\u0120t he", "ll o"]
    bpe_toks = ["!", "\"", "a", "b", "\u0120", "t", "h", "e", "l", "o", "\u0120t", "he",
                "ll", "\u0120the", "llo", "<|endoftext|>"]
    write("gguf", "vocab-only-gpt2", gguf([
        ("general.architecture", STR, "gpt2"),
        ("tokenizer.ggml.model", STR, "gpt2"),
        ("tokenizer.ggml.pre", STR, "gpt-2"),
        ("tokenizer.ggml.tokens", ARR, (STR, bpe_toks)),
        ("tokenizer.ggml.token_type", ARR, (I32, [1] * 15 + [3])),
        ("tokenizer.ggml.merges", ARR, (STR, merges)),
        ("tokenizer.ggml.bos_token_id", U32, 15),
    ], []))
    write("gguf", "empty-v3", gguf([], []))

    def st(tensors, meta=True):
        hdr, off, data = {}, 0, b""
        if meta:
            hdr["__metadata__"] = {"format": "pt"}
        for name, dt, shape in tensors:
            esz = {"F32": 4, "F16": 2, "BF16": 2}[dt]
            n = 1
            for d in shape:
                n *= d
            b = bytes((i * 11 + 3) & 0xFF for i in range(n * esz))
            hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
            off += len(b)
            data += b
        h = json.dumps(hdr, separators=(",", ":")).encode()
        h += b" " * ((-len(h)) % 8)
        return struct.pack("<Q", len(h)) + h + data

    write("safetensors", "tiny.safetensors", st([
        ("model.embed_tokens.weight", "F32", [4, 8]),
        ("model.layers.0.self_attn.q_proj.weight", "F16", [8, 8]),
        ("model.norm.weight", "BF16", [8]),
        ("model.layers.0.mlp.up_proj.weight", "BF16", [2, 2, 2, 2]),
    ]))
    write("safetensors", "zero-size.safetensors", st([("a", "F32", [0, 3]), ("b", "F16", [2])],
                                                     meta=False))
    write("safetensors", "empty.safetensors", st([], meta=False))

    # fuzz_hf: config.json, tokenizer.json, tokenizer_config.json joined by "\n--\n"
    def hf(config, tok, tok_cfg=None):
        parts = [json.dumps(config), json.dumps(tok, ensure_ascii=False)]
        if tok_cfg is not None:
            parts.append(json.dumps(tok_cfg))
        return "\n--\n".join(parts).encode()

    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8,
           "intermediate_size": 16, "num_attention_heads": 2, "num_key_value_heads": 1,
           "num_hidden_layers": 1, "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "vocab_size": 8, "hidden_act": "silu",
           "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
           "rope_scaling": {"type": "linear", "factor": 2.0}}
    gpt2 = {"version": "1.0",
            "added_tokens": [{"id": 6, "content": "<|endoftext|>", "special": True},
                             {"id": 7, "content": "<user>", "special": False}],
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3,
                                               "\u0120a": 4, "\u0120ab": 5},
                      "merges": ["a b", ["\u0120", "a"], "\u0120a b"]}}
    write("hf", "gpt2-style", hf(cfg, gpt2, {"bos_token": "<|endoftext|>",
                                             "eos_token": {"content": "<|endoftext|>"},
                                             "add_bos_token": False}))
    llama3 = dict(gpt2)
    llama3["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}"
                                      "\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
                                      "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated"},
        {"type": "ByteLevel", "use_regex": False}]}
    llama3["post_processor"] = {"type": "TemplateProcessing", "single": [
        {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
        {"Sequence": {"id": "A", "type_id": 0}}]}
    write("hf", "llama3-style", hf(dict(cfg, architectures=["MistralForCausalLM"]), llama3))
    spm_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "\u2581": 4, "h": 5,
                 "\u2581h": 6, "i": 7}
    spm = {"version": "1.0",
           "added_tokens": [{"id": i, "content": t, "special": True}
                            for i, t in enumerate(["<unk>", "<s>", "</s>"])],
           "normalizer": {"type": "Sequence", "normalizers": [
               {"type": "Prepend", "prepend": "\u2581"},
               {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
           "pre_tokenizer": None,
           "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}]},
           "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": True,
                     "vocab": spm_vocab, "merges": ["\u2581 h"]}}
    write("hf", "spm-style", hf(dict(cfg, tie_word_embeddings=False), spm,
                                {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                 "add_bos_token": True, "add_eos_token": False}))


if __name__ == "__main__":
    main()
