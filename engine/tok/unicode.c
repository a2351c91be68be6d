/* engine/tok/unicode.c: UTF-8 decoding/encoding as the tokenizers need it, and codepoint
 * properties from libutf8proc (see unicode.h for the contract). */
#include "unicode.h"

#if ORTHOD_HAVE_UTF8PROC
#include <utf8proc.h>
#endif

size_t eng_unicode_len_utf8(uint8_t lead)
{
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[lead >> 4];
}

uint32_t eng_unicode_decode(const uint8_t *s, size_t n, size_t *adv)
{
    const uint8_t b0 = s[0];
    size_t len;
    uint32_t cp;
    if (!(b0 & 0x80)) {
        *adv = 1;
        return b0;
    }
    if (!(b0 & 0x40))
        goto invalid;               // stray continuation byte
    if (!(b0 & 0x20)) {
        len = 2;
        cp = b0 & 0x1Fu;
    } else if (!(b0 & 0x10)) {
        len = 3;
        cp = b0 & 0x0Fu;
    } else if (!(b0 & 0x08)) {
        len = 4;
        cp = b0 & 0x07u;
    } else {
        goto invalid;               // 0xF8..0xFF
    }
    if (n < len)
        goto invalid;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            goto invalid;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (cp > 0x10FFFF)
        goto invalid;
    *adv = len;
    return cp;
invalid:
    *adv = 1;
    return ENG_UNICODE_REPLACEMENT;
}

size_t eng_unicode_encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | ((cp >> 18) & 0x07));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

int eng_unicode_check(const uint8_t *s, size_t n, size_t *bad)
{
    const uint8_t b0 = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;   // allowed range of the second byte
    if (b0 < 0x80)
        return 1;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3;
        if (b0 == 0xE0)
            lo = 0xA0;              // no overlong forms
        else if (b0 == 0xED)
            hi = 0x9F;              // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4;
        if (b0 == 0xF0)
            lo = 0x90;
        else if (b0 == 0xF4)
            hi = 0x8F;              // <= U+10FFFF
    } else {
        *bad = 1;                   // 0x80..0xC1, 0xF5..0xFF
        return 0;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= n)
            return -(int)n;
        const uint8_t c = s[i];
        if (c < (i == 1 ? lo : 0x80) || c > (i == 1 ? hi : 0xBF)) {
            *bad = i;
            return 0;
        }
    }
    return (int)need;
}

#if ORTHOD_HAVE_UTF8PROC
static bool is_white_space(uint32_t cp)
{
    // the Unicode White_Space property (PropList.txt), which llama.cpp uses for \s
    if (cp <= 0x20)
        return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85)
        return false;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

unsigned eng_unicode_flags(uint32_t cp)
{
    if (cp > 0x10FFFF)
        return ENG_UNI_UNDEFINED;
    unsigned f;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        f = ENG_UNI_LETTER;
        break;
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
        f = ENG_UNI_MARK;
        break;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        f = ENG_UNI_NUMBER;
        break;
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        f = ENG_UNI_PUNCT;
        break;
    case UTF8PROC_CATEGORY_SM:
    case UTF8PROC_CATEGORY_SC:
    case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO:
        f = ENG_UNI_SYMBOL;
        break;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
        f = ENG_UNI_SEPARATOR;
        break;
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
        f = ENG_UNI_CONTROL;
        break;
    default:
        f = ENG_UNI_UNDEFINED;
        break;
    }
    if (is_white_space(cp))
        f |= ENG_UNI_WHITESPACE;
    return f;
}

uint32_t eng_unicode_tolower(uint32_t cp)
{
    if (cp > 0x10FFFF)
        return cp;
    return (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
}

uint32_t eng_unicode_nfd_first(uint32_t cp)
{
    if (cp < 0xC0 || cp > 0x10FFFF)
        return cp;                  // nothing below U+00C0 decomposes
    utf8proc_int32_t buf[8];
    int boundclass = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)cp, buf, 8,
                                                 UTF8PROC_DECOMPOSE, &boundclass);
    return n >= 1 ? (uint32_t)buf[0] : cp;
}
#endif
