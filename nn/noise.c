/* TSDAE deletion noise: whitespace word split (Python str.split rules), counter-based keep
 * decisions, single-space re-join; see noise.h for the exact rule and why. */
#include "nn/noise.h"

#include <limits.h>
#include <string.h>

#include "nn/error.h"
#include "nn/rng.h"

/* Bytes of the whitespace character starting at s (UTF-8), 0 if it is not whitespace.
 * The set is Python's str.isspace(). s is NUL-terminated, so the look-ahead stops at the
 * terminator (it never equals a continuation byte) and never reads past it. */
static size_t space_len(const unsigned char *s) {
    unsigned c = s[0];
    if (c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
    if (c == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2;                 /* U+0085 U+00A0 */
    if (c == 0xE1 && s[1] == 0x9A && s[2] == 0x80) return 3;                   /* U+1680 */
    if (c == 0xE2 && s[1] == 0x80 &&
        ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
        return 3;                                   /* U+2000..200A, U+2028, U+2029, U+202F */
    if (c == 0xE2 && s[1] == 0x81 && s[2] == 0x9F) return 3;                   /* U+205F */
    if (c == 0xE3 && s[1] == 0x80 && s[2] == 0x80) return 3;                   /* U+3000 */
    return 0;
}

/* Finds the next word at or after *pos: sets *start and *len, advances *pos past it.
 * Returns 0 at the end of the text. */
static int next_word(const unsigned char *s, size_t *pos, size_t *start, size_t *len) {
    size_t i = *pos, k;
    while (s[i] && (k = space_len(s + i)) > 0) i += k;
    if (!s[i]) { *pos = i; return 0; }
    size_t b = i;
    while (s[i] && space_len(s + i) == 0) i++;
    *start = b; *len = i - b; *pos = i;
    return 1;
}

static int keep_word(uint64_t seed, uint64_t sample, uint32_t epoch, size_t i, float del_ratio) {
    return ag_rng_uniform(seed, AG_RNG_NOISE, sample, epoch, (uint64_t)i) >= del_ratio;
}

int ag_noise_delete(const char *text, float del_ratio, uint64_t seed, uint64_t sample,
                    uint32_t epoch, char *out, size_t out_cap, int *n_words, int *n_kept) {
    if (!text || !out) return ag_err("noise: NULL %s", text ? "output buffer" : "text");
    if (!(del_ratio >= 0.0f && del_ratio <= 1.0f))
        return ag_err("noise: del_ratio %g, expected a probability in [0, 1] (default %g)",
                      (double)del_ratio, (double)AG_TSDAE_DEL_RATIO);
    size_t tlen = strlen(text);
    if (out_cap < tlen + 1)
        return ag_err("noise: output buffer of %zu bytes, the text needs %zu (strlen + 1)",
                      out_cap, tlen + 1);
    const unsigned char *s = (const unsigned char *)text;

    /* Pass 1: count words and survivors (decisions are a function of the word index, so
     * pass 2 redraws the same ones). */
    size_t pos = 0, start, len, n = 0, kept = 0;
    while (next_word(s, &pos, &start, &len)) {
        kept += (size_t)keep_word(seed, sample, epoch, n, del_ratio);
        n++;
    }
    if (n > INT_MAX) return ag_err("noise: text of %zu words, at most %d supported", n, INT_MAX);
    if (n == 0) {  /* nothing to delete: ST returns the text itself */
        if (out != text) memcpy(out, text, tlen + 1);
        if (n_words) *n_words = 0;
        if (n_kept) *n_kept = 0;
        return 0;
    }
    size_t pick = n;  /* the one word kept when none survives; n: not needed */
    if (kept == 0) {
        uint32_t u = ag_rng_u32(seed, AG_RNG_NOISE, sample, epoch, AG_NOISE_PICK_INDEX);
        pick = (size_t)(((uint64_t)u * n) >> 32);
        kept = 1;
    }

    /* Pass 2: write the kept words. Safe in place: the separator goes in front of a word
     * only once that word has been found, so the write position stays at or before the
     * word's start (at least one whitespace byte lies between two words), and memmove
     * copies the word itself. */
    size_t w = 0, i = 0, written = 0;
    pos = 0;
    while (next_word(s, &pos, &start, &len)) {
        int k = pick < n ? i == pick : keep_word(seed, sample, epoch, i, del_ratio);
        i++;
        if (!k) continue;
        if (written++) out[w++] = ' ';
        memmove(out + w, text + start, len);
        w += len;
    }
    out[w] = '\0';
    if (n_words) *n_words = (int)n;
    if (n_kept) *n_kept = (int)kept;
    return 0;
}
