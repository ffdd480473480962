/* BERT WordPiece tokenizer: Hugging Face's BertTokenizer(do_lower_case=True) rules (the
 * Python BasicTokenizer + WordpieceTokenizer, see io/tokenizer.h), in one streaming pass
 * over the UTF-8 bytes with an ASCII fast path, a hash table for the vocab and no
 * allocation per word. Unicode data (categories, NFD, simple lower-case) comes from
 * utf8proc; the few rules Python's str.lower() adds on top (U+0130, final sigma) and the
 * Cased / Case_Ignorable properties it needs are written out here.
 *
 * The Python tokenizer NFC-normalises the cleaned text before lower-casing; with accent
 * stripping the NFD that follows undoes it, so the uncased pass skips it (the unicode test
 * checks every decomposable code point in both forms). The cased pass cannot, see
 * run_piece_cased. */
#include "io/tokenizer.h"
#include "io/readers.h"  /* ag_sha256_hex */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "nn/error.h"

/* Hugging Face's max_input_chars_per_word: longer words (in code points) become [UNK]. */
enum { MAX_WORD_CHARS = 100, WORD_BYTES = MAX_WORD_CHARS * 4 };

enum { SP_PAD, SP_UNK, SP_CLS, SP_SEP, SP_MASK, SP_N };
static const char *const SPECIAL_STR[SP_N] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

struct ag_tokenizer {
    int n;            /* ids 0..n-1 = lines of the vocab file */
    char *text;       /* all pieces, each NUL-terminated */
    uint32_t *off;    /* [n] offset of piece id in text */
    uint16_t *len;    /* [n] byte length of piece id */
    /* Open addressing, linear probing; a key is (continuation?, bytes without "##").
     * slot_id -1 = empty. slot_hash saves most key comparisons. */
    uint32_t mask;
    uint32_t *slot_hash;
    int32_t *slot_id;
    int maxlen[2];    /* longest key in bytes, [0] word-initial, [1] "##" continuation */
    int lower;
    int32_t special[SP_N];
    char hash_hex[65];
};

/* ---------------------------------------------------------------- hashing */

static inline uint64_t load_le(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    memcpy(&v, p, n); /* little-endian host: the bytes land in the low end */
    return v;
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    x ^= x >> 32;
    return x;
}

/* Keys are short (a vocab piece), so 8 bytes per multiply is plenty; cont picks a seed so
 * "##ab" and "ab" land apart. */
static inline uint32_t key_hash(const uint8_t *p, size_t n, int cont) {
    uint64_t h = (cont ? 0x9e3779b97f4a7c15ULL : 0x2545f4914f6cdd1dULL) ^ (n * 0xff51afd7ed558ccdULL);
    while (n >= 8) {
        h = (h ^ load_le(p, 8)) * 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n) h = (h ^ load_le(p, n)) * 0xc4ceb9fe1a85ec53ULL;
    return (uint32_t)mix64(h);
}

static inline int key_equal(const ag_tokenizer *tk, int32_t id, const uint8_t *p, size_t n, int cont) {
    const char *s = tk->text + tk->off[id];
    size_t sl = tk->len[id];
    if (cont) return sl == n + 2 && memcmp(s + 2, p, n) == 0;
    return sl == n && memcmp(s, p, n) == 0;
}

/* Vocab id of a key, or -1. */
static inline int32_t vocab_find(const ag_tokenizer *tk, const uint8_t *p, size_t n, int cont) {
    if ((int)n > tk->maxlen[cont]) return -1;
    uint32_t h = key_hash(p, n, cont);
    for (uint32_t i = h & tk->mask;; i = (i + 1) & tk->mask) {
        int32_t id = tk->slot_id[i];
        if (id < 0) return -1;
        if (tk->slot_hash[i] == h && key_equal(tk, id, p, n, cont)) return id;
    }
}

/* Later lines win, as in Hugging Face's load_vocab (a dict filled line by line). */
static void vocab_insert(ag_tokenizer *tk, int32_t id) {
    const uint8_t *s = (const uint8_t *)tk->text + tk->off[id];
    size_t n = tk->len[id];
    int cont = n >= 2 && s[0] == '#' && s[1] == '#';
    if (cont) { s += 2; n -= 2; }
    uint32_t h = key_hash(s, n, cont);
    for (uint32_t i = h & tk->mask;; i = (i + 1) & tk->mask) {
        int32_t old = tk->slot_id[i];
        if (old < 0) {
            tk->slot_id[i] = id;
            tk->slot_hash[i] = h;
            break;
        }
        if (tk->slot_hash[i] == h && key_equal(tk, old, s, n, cont)) { tk->slot_id[i] = id; break; }
    }
    if ((int)n > tk->maxlen[cont]) tk->maxlen[cont] = (int)n;
}

/* ---------------------------------------------------------------- UTF-8 */

/* Decode one code point at s[0..n), strictly as Python's decoder does (no overlongs, no
 * surrogates, nothing above U+10FFFF). Returns its byte length, 0 if invalid. */
static inline int utf8_decode(const uint8_t *s, size_t n, int32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    if (c < 0xC2) return 0;
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = (c & 0x1F) << 6 | (s[1] & 0x3F);
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;
        if (c == 0xED && s[1] > 0x9F) return 0;
        *cp = (c & 0x0F) << 12 | (s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        return 3;
    }
    if (c > 0xF4 || n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
    if (c == 0xF0 && s[1] < 0x90) return 0;
    if (c == 0xF4 && s[1] > 0x8F) return 0;
    *cp = (c & 0x07) << 18 | (s[1] & 0x3F) << 12 | (s[2] & 0x3F) << 6 | (s[3] & 0x3F);
    return 4;
}

static inline int utf8_encode(int32_t cp, uint8_t *o) {
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xC0 | cp >> 6); o[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---------------------------------------------------------------- character classes */

/* What the cleaning step (_clean_text, _tokenize_chinese_chars) and the whitespace split
 * make of a character. Letters, so that the ASCII table below reads as a string. */
enum { CL_DROP = 'D', CL_SPACE = 'S', CL_CJK = 'C', CL_PUNCT = 'P', CL_WORD = 'W' };

/* ASCII: controls (Cc, NUL, DEL) are dropped except \t \n \r, which are spaces like ' ';
 * 33-47, 58-64, 91-96 and 123-126 are punctuation (_is_punctuation); the rest are word
 * characters. */
static const char ascii_class[129] =
    "DDDDDDDDDSSDDSDDDDDDDDDDDDDDDDDDSPPPPPPPPPPPPPPPWWWWWWWWWWPPPPPPPWWWWWWWWWWWWWWWWWWWWWWWWWW"
    "PPPPPPWWWWWWWWWWWWWWWWWWWWWWWWWWPPPPD";

static inline uint8_t ascii_lower(uint8_t c) { return (uint8_t)((unsigned)c - 'A' < 26u ? c + 32 : c); }

/* BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks, not Hangul or kana. */
static inline int is_cjk(int32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static inline int cat_is_other(int cat) {
    return cat == UTF8PROC_CATEGORY_CN || cat >= UTF8PROC_CATEGORY_CC; /* Cc Cf Cs Co Cn */
}
static inline int cat_is_punct(int cat) {
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

/* Class of a non-ASCII code point. _is_control drops every C* category (unassigned and
 * private-use too) and U+FFFD; _is_whitespace makes Zs a space; str.split() then also
 * splits on U+2028/U+2029 (Zl, Zp), the only Python whitespace that survives cleaning. */
static inline int class_of(int32_t cp, int cat) {
    if (cp == 0xFFFD || cat_is_other(cat)) return CL_DROP;
    if (cat == UTF8PROC_CATEGORY_ZS || cp == 0x2028 || cp == 0x2029) return CL_SPACE;
    if (is_cjk(cp)) return CL_CJK;
    return CL_WORD; /* punctuation is decided after lower-casing and NFD */
}

/* Unicode Case_Ignorable (DerivedCoreProperties): Mn Me Cf Lm Sk and Word_Break MidLetter,
 * MidNumLet, Single_Quote. Only used for the final-sigma context of str.lower(). */
static int is_case_ignorable(int32_t cp, int cat) {
    if (cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
        cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK)
        return 1;
    switch (cp) {
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4:
    case 0x2018: case 0x2019: case 0x2024: case 0x2027: case 0xFE13: case 0xFE52:
    case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
        return 1;
    default:
        return 0;
    }
}

/* Unicode Cased = Lu Ll Lt + Other_Lowercase + Other_Uppercase. Only the Other_* code points
 * that are not also case-ignorable are listed: the context scan skips the others first. */
static int is_cased(int32_t cp, int cat) {
    if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT) return 1;
    return cp == 0xAA || cp == 0xBA || (cp >= 0x2160 && cp <= 0x217F) || (cp >= 0x24B6 && cp <= 0x24E9) ||
           (cp >= 0x1F130 && cp <= 0x1F149) || (cp >= 0x1F150 && cp <= 0x1F169) ||
           (cp >= 0x1F170 && cp <= 0x1F189);
}

static inline int category_of(int32_t cp) { return utf8proc_get_property(cp)->category; }

/* ---------------------------------------------------------------- the streaming pass */

enum { OUT_IDS, OUT_WORDS };

typedef struct {
    const ag_tokenizer *tk;
    const uint8_t *s; /* the text being scanned (raw, or the cleaned NFC copy in cased mode) */
    int lower;
    /* current word: final characters (after lower-casing, NFD, dropping Mn) */
    uint8_t *wb;
    int wbytes, wchars, wcap;  /* wcap: characters that fit */
    uint16_t *woff;            /* [wcap+1] byte offset of each character */
    uint8_t *wccc;             /* [wcap] canonical combining class of each character */
    int overflow;              /* the word has more than wcap characters: [UNK] */
    int run_start;             /* first character of the current run of non-zero ccc, or -1 */
    /* output */
    int mode;
    int32_t **ids;
    int *n, *cap;
    char *str;                 /* OUT_WORDS: words joined by spaces */
    size_t slen, scap;
    int oom;
} tk_run;

static int out_grow_ids(tk_run *r, int need) {
    if (*r->n + need <= *r->cap) return 0;
    int nc = *r->cap ? *r->cap : 64;
    while (nc < *r->n + need) nc *= 2;
    int32_t *p = realloc(*r->ids, (size_t)nc * sizeof *p);
    if (!p) { r->oom = 1; return -1; }
    *r->ids = p;
    *r->cap = nc;
    return 0;
}

static void out_str(tk_run *r, const char *p, size_t n) {
    if (r->slen + n + 2 > r->scap) {
        size_t nc = r->scap ? r->scap * 2 : 256;
        while (nc < r->slen + n + 2) nc *= 2;
        char *q = realloc(r->str, nc);
        if (!q) { r->oom = 1; return; }
        r->str = q;
        r->scap = nc;
    }
    if (r->slen) r->str[r->slen++] = ' ';
    memcpy(r->str + r->slen, p, n);
    r->slen += n;
    r->str[r->slen] = 0;
}

static void out_id(tk_run *r, int32_t id) {
    if (r->mode == OUT_WORDS) {
        out_str(r, r->tk->text + r->tk->off[id], r->tk->len[id]);
        return;
    }
    if (out_grow_ids(r, 1)) return;
    (*r->ids)[(*r->n)++] = id;
}

/* WordpieceTokenizer.tokenize on one word: greedy longest match, "##" after the first
 * piece, [UNK] for the whole word if some position has no match or it is too long. */
static void wordpiece(tk_run *r) {
    const ag_tokenizer *tk = r->tk;
    int nc = r->wchars;
    if (r->overflow) { out_id(r, tk->special[SP_UNK]); return; }
    int32_t sub[MAX_WORD_CHARS];
    int ns = 0, start = 0;
    const uint16_t *off = r->woff;
    while (start < nc) {
        int cont = start > 0;
        int end = nc;
        while (end > start && off[end] - off[start] > tk->maxlen[cont]) end--;
        int32_t id = -1;
        for (; end > start; end--) {
            id = vocab_find(tk, r->wb + off[start], (size_t)(off[end] - off[start]), cont);
            if (id >= 0) break;
        }
        if (id < 0) { out_id(r, tk->special[SP_UNK]); return; }
        sub[ns++] = id;
        start = end;
    }
    if (r->mode == OUT_WORDS) {
        for (int i = 0; i < ns; i++) out_id(r, sub[i]);
        return;
    }
    if (out_grow_ids(r, ns)) return;
    memcpy(*r->ids + *r->n, sub, (size_t)ns * sizeof *sub);
    *r->n += ns;
}

static void word_flush(tk_run *r) {
    if (r->wchars > 0 || r->overflow) {
        if (r->mode == OUT_WORDS) {
            if (r->overflow) out_str(r, "[TOO-LONG]", 10);
            else out_str(r, (const char *)r->wb, (size_t)r->wbytes);
        } else {
            wordpiece(r);
        }
    }
    r->wchars = r->wbytes = 0;
    r->overflow = 0;
    r->run_start = -1;
}

/* Append one final character to the word. Characters with a non-zero combining class are
 * put in canonical order within their run (the reordering step of NFD); since Mn marks
 * are dropped, this only ever moves the rare spacing marks that carry a class. */
static void word_put(tk_run *r, int32_t cp, int ccc) {
    if (ccc == 0) r->run_start = -1;
    else if (r->run_start < 0) r->run_start = r->wchars;
    if (r->wchars >= r->wcap) { r->overflow = 1; return; }
    uint8_t enc[4];
    int el = utf8_encode(cp, enc);
    int at = r->wchars;
    if (ccc) while (at > r->run_start && r->wccc[at - 1] > ccc) at--;
    if (at == r->wchars) {
        memcpy(r->wb + r->wbytes, enc, (size_t)el);
    } else {
        int bo = r->woff[at];
        memmove(r->wb + bo + el, r->wb + bo, (size_t)(r->wbytes - bo));
        memcpy(r->wb + bo, enc, (size_t)el);
        for (int i = r->wchars; i > at; i--) {
            r->woff[i] = (uint16_t)(r->woff[i - 1] + el);
            r->wccc[i] = r->wccc[i - 1];
        }
    }
    r->wccc[at] = (uint8_t)ccc;
    r->wchars++;
    r->wbytes += el;
    r->woff[r->wchars] = (uint16_t)r->wbytes;
}

/* A punctuation character is a word of its own (_run_split_on_punc). */
static void word_punct(tk_run *r, int32_t cp) {
    word_flush(r);
    word_put(r, cp, 0);
    word_flush(r);
}

/* One character after lower-casing: NFD, drop Mn, split punctuation. */
static void put_lowered(tk_run *r, int32_t cp) {
    if (cp < 0x80) {
        if (ascii_class[cp] == CL_PUNCT) word_punct(r, cp);
        else word_put(r, cp, 0);
        return;
    }
    utf8proc_int32_t d[16];
    utf8proc_ssize_t nd = utf8proc_decompose_char(cp, d, 16, UTF8PROC_DECOMPOSE, NULL);
    if (nd < 1 || nd > 16) { d[0] = cp; nd = 1; }
    for (utf8proc_ssize_t i = 0; i < nd; i++) {
        const utf8proc_property_t *p = utf8proc_get_property(d[i]);
        if (p->category == UTF8PROC_CATEGORY_MN) {
            /* dropped, but a class-0 mark still ends a reordering run */
            if (p->combining_class == 0) r->run_start = -1;
            else if (r->run_start < 0) r->run_start = r->wchars;
            continue;
        }
        if (d[i] < 0x80 ? ascii_class[d[i]] == CL_PUNCT : cat_is_punct(p->category)) word_punct(r, d[i]);
        else word_put(r, d[i], p->combining_class);
    }
}

/* One character of a cased tokenizer: no lower-casing, no accent stripping. */
static void put_cased(tk_run *r, int32_t cp) {
    if (cp < 0x80 ? ascii_class[cp] == CL_PUNCT : cat_is_punct(category_of(cp))) word_punct(r, cp);
    else word_put(r, cp, 0);
}

/* Class of the character at s[i] (ASCII table or Unicode), with its length; -1 if the
 * bytes are not valid UTF-8. */
static inline int class_at(const uint8_t *s, size_t i, size_t end, int32_t *cp, int *len) {
    if (s[i] < 0x80) { *cp = s[i]; *len = 1; return ascii_class[s[i]]; }
    int l = utf8_decode(s + i, end - i, cp);
    if (!l) return -1;
    *len = l;
    return class_of(*cp, category_of(*cp));
}

/* str.lower() maps U+03A3 to final sigma when it ends a word: a cased letter before it and
 * none after it, skipping case-ignorable characters either way (CPython's
 * handle_capital_sigma). The context is the whitespace-delimited token of the cleaned
 * text, so characters cleaning drops are skipped, and whitespace or CJK ends the token. */
static int final_sigma(const uint8_t *s, size_t tok_start, size_t at, size_t after, size_t end) {
    int32_t cp;
    int len, before = 0;
    size_t i = at;
    while (i > tok_start) {
        size_t j = i - 1;
        while (j > tok_start && (s[j] & 0xC0) == 0x80) j--;
        int cl = class_at(s, j, i, &cp, &len);
        i = j;
        if (cl == CL_DROP) continue;
        if (cl != CL_WORD && cl != CL_PUNCT) break;
        int cat = category_of(cp);
        if (is_case_ignorable(cp, cat)) continue;
        before = is_cased(cp, cat);
        break;
    }
    if (!before) return 0;
    for (i = after; i < end; i += (size_t)len) {
        int cl = class_at(s, i, end, &cp, &len);
        if (cl < 0) return 1; /* invalid bytes: the caller reports them next */
        if (cl == CL_DROP) continue;
        if (cl != CL_WORD && cl != CL_PUNCT) return 1;
        int cat = category_of(cp);
        if (is_case_ignorable(cp, cat)) continue;
        return !is_cased(cp, cat);
    }
    return 1;
}

/* A whitespace token that equals a special token after cleaning (e.g. "[SE\x01P]") is in
 * the slow tokenizer's never_split set: not lower-cased, not split, looked up whole. The
 * NFC step before it can only turn a lone U+212A KELVIN SIGN into an ASCII letter of
 * these strings. Returns the byte position after the token's last character, or 0. */
static size_t never_split_at(const tk_run *r, size_t i, size_t end, int32_t *id) {
    for (int k = 0; k < SP_N; k++) {
        if (r->tk->special[k] < 0) continue;
        const char *sp = SPECIAL_STR[k];
        size_t j = i, last = 0;
        int32_t cp;
        int len, cl = CL_WORD;
        for (; *sp && j < end; j += (size_t)len) {
            cl = class_at(r->s, j, end, &cp, &len);
            if (cl == CL_DROP) continue;
            if (cl != CL_WORD && cl != CL_PUNCT) break;
            if (cp == 0x212A) cp = 'K';
            if (cp != (unsigned char)*sp) break;
            sp++;
            last = j + (size_t)len;
        }
        if (*sp) continue;
        for (; j < end; j += (size_t)len) { /* then only dropped characters up to the end */
            cl = class_at(r->s, j, end, &cp, &len);
            if (cl != CL_DROP) break;
        }
        if (j < end && cl != CL_SPACE && cl != CL_CJK) continue;
        *id = r->tk->special[k];
        return last;
    }
    return 0;
}

/* Tokenize s[i..end), a stretch of text between special tokens. Returns the byte offset of
 * invalid UTF-8, or -1 when all is well. */
static long long run_piece(tk_run *r, size_t i, size_t end) {
    const uint8_t *s = r->s;
    size_t tok_start = i; /* first byte of the current whitespace token */
    int tok_fresh = 1;    /* nothing of the token kept yet (only dropped characters) */
    while (i < end) {
        uint8_t c = s[i];
        if (c < 0x80) { /* ASCII fast path */
            int cl = ascii_class[c];
            if (cl == CL_WORD) {
                word_put(r, r->lower ? ascii_lower(c) : c, 0);
                tok_fresh = 0;
            } else if (cl == CL_PUNCT) {
                int32_t sid;
                size_t nx;
                if (c == '[' && tok_fresh && (nx = never_split_at(r, i, end, &sid))) {
                    word_flush(r);
                    out_id(r, sid);
                    tok_fresh = 0;
                    i = nx;
                    continue;
                }
                word_punct(r, c);
                tok_fresh = 0;
            } else if (cl == CL_SPACE) {
                word_flush(r);
                tok_start = i + 1;
                tok_fresh = 1;
            }
            i++;
            continue;
        }
        int32_t cp;
        int len = utf8_decode(s + i, end - i, &cp);
        if (!len) return (long long)i;
        int cl = class_of(cp, category_of(cp));
        if (cl == CL_DROP) { i += (size_t)len; continue; }
        if (cl == CL_SPACE || cl == CL_CJK) {
            word_flush(r);
            if (cl == CL_CJK) { /* _tokenize_chinese_chars: a word of its own */
                if (r->lower) put_lowered(r, cp);
                else put_cased(r, cp);
                word_flush(r);
            }
            i += (size_t)len;
            tok_start = i;
            tok_fresh = 1;
            continue;
        }
        tok_fresh = 0;
        if (!r->lower) {
            put_cased(r, cp);
        } else if (cp == 0x3A3) {
            put_lowered(r, final_sigma(s, tok_start, i, i + (size_t)len, end) ? 0x3C2 : 0x3C3);
        } else if (cp == 0x130) { /* str.lower(): U+0130 -> "i" + U+0307 (full mapping) */
            put_lowered(r, 'i');
            put_lowered(r, 0x307);
        } else {
            put_lowered(r, utf8proc_tolower(cp));
        }
        i += (size_t)len;
    }
    word_flush(r);
    return -1;
}

/* Cased mode: the slow tokenizer NFC-normalises the cleaned text, and without accent
 * stripping the composed characters reach WordPiece. Clean into a copy, NFC it with
 * utf8proc, then run the ordinary pass over that. */
static long long run_piece_cased(tk_run *r, size_t i, size_t end) {
    const uint8_t *raw = r->s;
    int ascii = 1;
    for (size_t k = i; k < end; k++) if (raw[k] >= 0x80) { ascii = 0; break; }
    if (ascii) return run_piece(r, i, end);
    uint8_t *clean = malloc((end - i) * 3 + 1);
    if (!clean) { r->oom = 1; return -1; }
    size_t cn = 0;
    for (size_t k = i; k < end;) {
        int32_t cp;
        int len;
        int cl = class_at(raw, k, end, &cp, &len);
        if (cl < 0) { free(clean); return (long long)k; }
        if (cl == CL_SPACE) clean[cn++] = ' ';
        else if (cl == CL_CJK) { clean[cn++] = ' '; cn += (size_t)utf8_encode(cp, clean + cn); clean[cn++] = ' '; }
        else if (cl != CL_DROP) cn += (size_t)utf8_encode(cp, clean + cn);
        k += (size_t)len;
    }
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t nn = utf8proc_map(clean, (utf8proc_ssize_t)cn, &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    free(clean);
    if (nn < 0) { free(nfc); r->oom = 1; return -1; }
    r->s = nfc;
    long long bad = run_piece(r, 0, (size_t)nn);
    r->s = raw;
    free(nfc);
    return bad;
}

/* The slow tokenizer first splits the raw text on special tokens (its added-tokens trie:
 * exact, case-sensitive) and tokenizes the stretches between them separately. */
static int run_text(tk_run *r, const char *text, size_t len) {
    const uint8_t *s = (const uint8_t *)text;
    r->s = s;
    size_t piece = 0, i = 0;
    while (i < len) {
        const uint8_t *b = memchr(s + i, '[', len - i);
        if (!b) break;
        i = (size_t)(b - s);
        int hit = -1;
        size_t hl = 0;
        for (int k = 0; k < SP_N && hit < 0; k++) {
            size_t l = strlen(SPECIAL_STR[k]);
            if (r->tk->special[k] >= 0 && i + l <= len && memcmp(s + i, SPECIAL_STR[k], l) == 0) { hit = k; hl = l; }
        }
        if (hit < 0) { i++; continue; }
        long long bad = r->lower ? run_piece(r, piece, i) : run_piece_cased(r, piece, i);
        if (bad >= 0) return ag_err("invalid UTF-8 at byte offset %lld", bad);
        out_id(r, r->tk->special[hit]);
        i += hl;
        piece = i;
    }
    long long bad = r->lower ? run_piece(r, piece, len) : run_piece_cased(r, piece, len);
    if (bad >= 0) return ag_err("invalid UTF-8 at byte offset %lld", bad);
    if (r->oom) return ag_err("tokenizer: out of memory");
    return 0;
}

int ag_tok_wordpieces(const ag_tokenizer *tk, const char *text, size_t len, int32_t **ids, int *n, int *cap) {
    uint8_t wb[WORD_BYTES + 8];
    uint16_t woff[MAX_WORD_CHARS + 1];
    uint8_t wccc[MAX_WORD_CHARS];
    tk_run r = {.tk = tk, .lower = tk->lower, .wb = wb, .wcap = MAX_WORD_CHARS, .woff = woff, .wccc = wccc,
                .run_start = -1, .mode = OUT_IDS, .ids = ids, .n = n, .cap = cap};
    woff[0] = 0;
    int n0 = *n;
    if (!text && len) return ag_err("tokenizer: NULL text of length %zu", len);
    if (len && run_text(&r, text, len)) { *n = n0; return -1; }
    return 0;
}

char *ag_tok_basic(const ag_tokenizer *tk, const char *text, size_t len) {
    /* Every input byte yields at most one final character of at most 4 bytes (Hangul
     * syllables: 3 bytes -> up to 3 jamo of 3 bytes). */
    size_t wcap = len + 4;
    if (wcap > 65535 / 4) return ag_err("tokenizer: ag_tok_basic takes at most %d bytes", 65535 / 4 - 4), NULL;
    uint8_t *wb = malloc(wcap * 4 + 8);
    uint16_t *woff = malloc((wcap + 1) * sizeof *woff);
    uint8_t *wccc = malloc(wcap);
    tk_run r = {.tk = tk, .lower = tk->lower, .wb = wb, .wcap = (int)wcap, .woff = woff, .wccc = wccc,
                .run_start = -1, .mode = OUT_WORDS};
    char *out = NULL;
    if (wb && woff && wccc) {
        woff[0] = 0;
        out_str(&r, "", 0);
        r.slen = 0;
        if (!r.oom && run_text(&r, text, len) == 0) { out = r.str; r.str = NULL; }
        else if (r.oom) ag_err("tokenizer: out of memory");
    } else {
        ag_err("tokenizer: out of memory");
    }
    free(r.str);
    free(wb);
    free(woff);
    free(wccc);
    return out;
}

/* ---------------------------------------------------------------- vocab */

ag_tokenizer *ag_tokenizer_load(const char *vocab_path, int do_lower_case) {
    FILE *f = fopen(vocab_path, "rb");
    if (!f) return ag_err("vocab %s: cannot open", vocab_path), NULL;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return ag_err("vocab %s: out of memory", vocab_path), NULL; }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) { free(buf); return ag_err("vocab %s: read error", vocab_path), NULL; }

    ag_tokenizer *tk = calloc(1, sizeof *tk);
    if (!tk) { free(buf); return ag_err("vocab %s: out of memory", vocab_path), NULL; }
    tk->lower = do_lower_case != 0;
    ag_sha256_hex(buf, n, tk->hash_hex);

    /* Lines end at \n, \r\n or \r: Python's text mode (universal newlines), then
     * rstrip("\n"). A last line without a newline still counts; an empty file has none. */
    int lines = 0, line = 1;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        int l = utf8_decode(buf + i, n - i, &cp);
        if (!l) {
            free(buf); free(tk);
            return ag_err("vocab %s line %d: invalid UTF-8 at byte offset %zu", vocab_path, line, i), NULL;
        }
        if (cp == '\n' || cp == '\r') {
            lines++; line++;
            if (cp == '\r' && i + 1 < n && buf[i + 1] == '\n') i++;
        }
        i += (size_t)l;
    }
    if (n && buf[n - 1] != '\n' && buf[n - 1] != '\r') lines++;
    if (lines == 0) { free(buf); free(tk); return ag_err("vocab %s: empty", vocab_path), NULL; }

    tk->n = lines;
    tk->text = malloc(n + 1);
    tk->off = malloc((size_t)lines * sizeof *tk->off);
    tk->len = malloc((size_t)lines * sizeof *tk->len);
    uint32_t slots = 16;
    while (slots < (uint32_t)lines * 2) slots *= 2;
    tk->mask = slots - 1;
    tk->slot_hash = malloc(slots * sizeof *tk->slot_hash);
    tk->slot_id = malloc(slots * sizeof *tk->slot_id);
    if (!tk->text || !tk->off || !tk->len || !tk->slot_hash || !tk->slot_id) {
        free(buf);
        ag_tokenizer_free(tk);
        return ag_err("vocab %s: out of memory", vocab_path), NULL;
    }
    memset(tk->slot_id, 0xff, slots * sizeof *tk->slot_id);
    size_t w = 0;
    int id = 0;
    for (size_t i = 0; i <= n && id < lines;) {
        size_t j = i;
        while (j < n && buf[j] != '\n' && buf[j] != '\r') j++;
        if (j - i > 65535) {
            free(buf);
            ag_tokenizer_free(tk);
            return ag_err("vocab %s line %d: token of %zu bytes (at most 65535)", vocab_path, id + 1, j - i), NULL;
        }
        memcpy(tk->text + w, buf + i, j - i);
        tk->off[id] = (uint32_t)w;
        tk->len[id] = (uint16_t)(j - i);
        w += j - i;
        tk->text[w++] = 0;
        vocab_insert(tk, id);
        id++;
        if (j < n && buf[j] == '\r' && j + 1 < n && buf[j + 1] == '\n') j++;
        i = j + 1;
    }
    free(buf);
    for (int k = 0; k < SP_N; k++)
        tk->special[k] = vocab_find(tk, (const uint8_t *)SPECIAL_STR[k], strlen(SPECIAL_STR[k]), 0);
    const int need[] = {SP_UNK, SP_CLS, SP_SEP};
    for (int k = 0; k < 3; k++) {
        if (tk->special[need[k]] < 0) {
            ag_tokenizer_free(tk);
            return ag_err("vocab %s: no %s token (a BERT vocab needs [UNK], [CLS] and [SEP])", vocab_path,
                          SPECIAL_STR[need[k]]), NULL;
        }
    }
    return tk;
}

void ag_tokenizer_free(ag_tokenizer *tk) {
    if (!tk) return;
    free(tk->text);
    free(tk->off);
    free(tk->len);
    free(tk->slot_hash);
    free(tk->slot_id);
    free(tk);
}

int ag_tokenizer_vocab_size(const ag_tokenizer *tk) { return tk->n; }
int32_t ag_tok_pad(const ag_tokenizer *tk) { return tk->special[SP_PAD]; }
int32_t ag_tok_unk(const ag_tokenizer *tk) { return tk->special[SP_UNK]; }
int32_t ag_tok_cls(const ag_tokenizer *tk) { return tk->special[SP_CLS]; }
int32_t ag_tok_sep(const ag_tokenizer *tk) { return tk->special[SP_SEP]; }
int32_t ag_tok_mask(const ag_tokenizer *tk) { return tk->special[SP_MASK]; }
int ag_tokenizer_lower(const ag_tokenizer *tk) { return tk->lower; }

const char *ag_tok_piece(const ag_tokenizer *tk, int32_t id) {
    return id >= 0 && id < tk->n ? tk->text + tk->off[id] : NULL;
}

int32_t ag_tok_id(const ag_tokenizer *tk, const char *piece) {
    size_t n = strlen(piece);
    int cont = n >= 2 && piece[0] == '#' && piece[1] == '#';
    return cont ? vocab_find(tk, (const uint8_t *)piece + 2, n - 2, 1) : vocab_find(tk, (const uint8_t *)piece, n, 0);
}

const char *ag_tokenizer_vocab_hash(const ag_tokenizer *tk) { return tk->hash_hex; }

/* ---------------------------------------------------------------- model inputs */

int ag_tok_build_single(const ag_tokenizer *tk, const int32_t *a, int na, int max_len, int32_t *ids,
                        int32_t *types) {
    if (max_len < 2) return ag_err("tokenizer: max_len %d too small for [CLS] a [SEP] (need >= 2)", max_len);
    if (na < 0) return ag_err("tokenizer: negative sequence length %d", na);
    int ka = na < max_len - 2 ? na : max_len - 2;
    int t = 0;
    ids[t++] = tk->special[SP_CLS];
    if (ka) memcpy(ids + t, a, (size_t)ka * sizeof *a); /* a may be NULL when empty */
    t += ka;
    ids[t++] = tk->special[SP_SEP];
    if (types) memset(types, 0, (size_t)t * sizeof *types);
    return t;
}

/* How many pieces of a and b to keep under longest_first with room for `room` pieces. */
static void keep_lengths(int na, int nb, int room, ag_trunc_style style, int *ka, int *kb) {
    *ka = na;
    *kb = nb;
    if (na + nb <= room) return;
    if (style == AG_TRUNC_LEGACY) {
        /* The Python tokenizer's truncate_sequences: first even out the longer side, then
         * share the rest, the second sequence losing the odd one. */
        int r = na + nb - room;
        int d = na > nb ? na - nb : nb - na;
        int first = d < r ? d : r, second = r - first;
        if (na > nb) { *ka = na - (first + second / 2); *kb = nb - (second - second / 2); }
        else { *ka = na - second / 2; *kb = nb - (first + second - second / 2); }
        return;
    }
    /* The Rust tokenizers' truncate_encodings: the shorter keeps what it can, but if both
     * must be cut, the shorter gets room/2 and the longer (the second on ties) the rest. */
    int s = na, l = nb, swap = 0;
    if (s > l) { s = nb; l = na; swap = 1; }
    int ks, kl;
    if (s > room) kl = s;
    else kl = s > room - s ? s : room - s;
    ks = s;
    if (ks + kl > room) { ks = room / 2; kl = ks + room % 2; }
    if (swap) { *ka = kl; *kb = ks; } else { *ka = ks; *kb = kl; }
    if (*ka > na) *ka = na;
    if (*kb > nb) *kb = nb;
}

int ag_tok_build_pair_style(const ag_tokenizer *tk, const int32_t *a, int na, const int32_t *b, int nb,
                            int max_len, ag_trunc_style style, int32_t *ids, int32_t *types) {
    if (max_len < 3) return ag_err("tokenizer: max_len %d too small for [CLS] a [SEP] b [SEP] (need >= 3)", max_len);
    if (na < 0 || nb < 0) return ag_err("tokenizer: negative sequence length (%d, %d)", na, nb);
    int ka, kb;
    keep_lengths(na, nb, max_len - 3, style, &ka, &kb);
    int t = 0;
    ids[t++] = tk->special[SP_CLS];
    if (ka) memcpy(ids + t, a, (size_t)ka * sizeof *a);
    t += ka;
    ids[t++] = tk->special[SP_SEP];
    int ta = t;
    if (kb) memcpy(ids + t, b, (size_t)kb * sizeof *b);
    t += kb;
    ids[t++] = tk->special[SP_SEP];
    if (types) {
        memset(types, 0, (size_t)ta * sizeof *types);
        for (int i = ta; i < t; i++) types[i] = 1;
    }
    return t;
}

int ag_tok_build_pair(const ag_tokenizer *tk, const int32_t *a, int na, const int32_t *b, int nb, int max_len,
                      int32_t *ids, int32_t *types) {
    return ag_tok_build_pair_style(tk, a, na, b, nb, max_len, AG_TRUNC_FAST, ids, types);
}
