/* engine/tok/unicode.h: the Unicode pieces the tokenizers need (internal to engine/).
 * Owns: UTF-8 decoding done exactly the way llama.cpp does it (token ids depend on it),
 * UTF-8 encoding, and codepoint properties (general-category flags, White_Space,
 * lowercase, first codepoint of the NFD form). The properties come from libutf8proc and
 * exist only when the build found it (ORTHOD_HAVE_UTF8PROC); the decoding does not need it.
 * Thread: any; no state. */
#ifndef ORTHOD_ENGINE_UNICODE_H
#define ORTHOD_ENGINE_UNICODE_H

#include "orthod_config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENG_UNICODE_REPLACEMENT 0xFFFDu

/* Bytes of the UTF-8 sequence that `lead` starts, by its high nibble only (llama.cpp's
 * unicode_len_utf8): 1 for ASCII and for stray continuation bytes, 2 for 0xC0..0xDF,
 * 3 for 0xE0..0xEF, 4 for 0xF0..0xFF. Callers clamp it to the bytes left. */
size_t eng_unicode_len_utf8(uint8_t lead);

/* Decodes one codepoint at s[0..n) (n >= 1) the way llama.cpp's unicode_cpts_from_utf8
 * does: the lead byte's bit pattern decides the length, continuation bytes must be
 * 10xxxxxx, overlong forms and surrogates are accepted as they decode. Anything else
 * (a stray continuation byte, a truncated sequence, a lead byte 0xF8..0xFF) gives U+FFFD
 * and consumes one byte. One difference: a 4-byte form above U+10FFFF (which llama.cpp
 * cannot re-encode and throws on) is treated as invalid too. *adv = bytes consumed. */
uint32_t eng_unicode_decode(const uint8_t *s, size_t n, size_t *adv);

/* Encodes cp (<= 0x10FFFF) as UTF-8 into out; returns 1..4. */
size_t eng_unicode_encode(uint32_t cp, uint8_t out[4]);

/* Length of the complete, strictly valid UTF-8 sequence at s[0..n) (RFC 3629: no overlong
 * forms, no surrogates, <= U+10FFFF), or 0 when s starts an invalid sequence, or -k
 * (k = 1..3) when s[0..n) is a valid but incomplete prefix of length k = n. The invalid
 * case sets *bad to the length of the maximal ill-formed subpart (1..3) to replace with
 * one U+FFFD (Unicode's recommended practice). Used by the streaming decoder. */
int eng_unicode_check(const uint8_t *s, size_t n, size_t *bad);

#if ORTHOD_HAVE_UTF8PROC
/* Category flags of a codepoint, as llama.cpp's unicode_cpt_flags groups them. */
enum eng_unicode_flag {
    ENG_UNI_UNDEFINED = 1u << 0,    /* Cn, or outside Unicode */
    ENG_UNI_NUMBER = 1u << 1,       /* \p{N} */
    ENG_UNI_LETTER = 1u << 2,       /* \p{L} */
    ENG_UNI_SEPARATOR = 1u << 3,    /* \p{Z} */
    ENG_UNI_MARK = 1u << 4,         /* \p{M} */
    ENG_UNI_PUNCT = 1u << 5,        /* \p{P} */
    ENG_UNI_SYMBOL = 1u << 6,       /* \p{S} */
    ENG_UNI_CONTROL = 1u << 7,      /* \p{C} other than Cn */
    ENG_UNI_WHITESPACE = 1u << 8,   /* the White_Space property (regex \s) */
};
unsigned eng_unicode_flags(uint32_t cp);
uint32_t eng_unicode_tolower(uint32_t cp);
/* The first codepoint of cp's canonical decomposition (NFD), e.g. U+00E9 -> U+0065;
 * cp itself when it has none (what llama.cpp's unicode_cpts_normalize_nfd computes). */
uint32_t eng_unicode_nfd_first(uint32_t cp);
#endif

#endif
