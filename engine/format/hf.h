/* engine/format/hf.h: Hugging Face model folders as an in-memory GGUF.
 * Owns: eng_hf_open, which reads a folder holding config.json, model.safetensors (or
 * the shards listed in model.safetensors.index.json), tokenizer.json and optionally
 * tokenizer_config.json, and assembles an eng_gguf_t with the keys and tensor names
 * llama.cpp's convert_hf_to_gguf.py writes for the llama architecture; and the
 * safetensors parser it uses (also the fuzzer's entry point).
 * Tensor data is not copied: each shard is mmapped and held by the returned object
 * (eng_gguf_hold). Q/K stay in Hugging Face's rotate-half layout, so the object carries
 * orthod.rope.neox = true and the model loader uses NEOX RoPE.
 * Supported (docs/models.md): LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM
 * configs (model_type llama/mistral/qwen2) whose tensors fit the llama layout (no
 * attention or MLP biases); F32/F16/BF16 tensors; byte-level BPE (GPT-2/Llama-3/Qwen2)
 * and SentencePiece-style byte-fallback BPE (Llama-2) tokenizer.json.
 * Compiled only when jansson is available (ORTHOD_HAVE_JANSSON).
 * Errors: ERR_NOTFOUND (a required file is missing), ERR_CORRUPT (malformed JSON or
 * safetensors; the message names the file and what is wrong), ERR_UNSUPPORTED (an
 * architecture, dtype, tensor or tokenizer we do not handle, named in the message),
 * ERR_TOOLARGE (a JSON file over its size cap), ERR_IO, ERR_NOMEM. */
#ifndef ORTHOD_ENGINE_HF_H
#define ORTHOD_ENGINE_HF_H

#include "../../common/err.h"
#include "gguf.h"
#include "../tensor.h"

#include <stddef.h>
#include <stdint.h>

int eng_hf_open(const char *dir, eng_gguf_t **out, struct errbuf *eb);

/* Caps on what a safetensors file may declare before we parse or allocate. */
#define ENG_HF_MAX_HEADER (100u << 20)     /* JSON header bytes */

/* One tensor of a safetensors file, in ggml order (ne[0] innermost: the reverse of
 * the file's row-major shape). name is NUL-terminated and valid during the callback. */
struct eng_hf_st_tensor {
    const char *name;
    enum eng_dtype dtype;      /* F32, F16 or BF16 */
    int n_dims;                /* 1..4 */
    int64_t ne[4];             /* unused dims are 1 */
    const void *data;          /* inside [image, image + size), aligned to the element size */
    size_t nbytes;
};
typedef int (*eng_hf_st_fn)(void *ctx, const struct eng_hf_st_tensor *t, struct errbuf *eb);

/* Validates one safetensors file image (8-byte LE header length, JSON header, data) and
 * calls fn for each tensor in data order. Stops at and returns fn's first error.
 * ERR_CORRUPT (message names the tensor) or ERR_UNSUPPORTED (dtype, rank). */
int eng_hf_safetensors_parse(const void *image, size_t size, eng_hf_st_fn fn, void *ctx,
                             struct errbuf *eb);

#endif
