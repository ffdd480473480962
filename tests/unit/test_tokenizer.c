/* Tokenizer tests: ids identical to Hugging Face's BERT tokenizers.
 *
 *   test_tokenizer                 hand-written edge cases against the committed fixture
 *                                  (tests/fixtures/tokenizer_edge.agfx, synthetic vocab),
 *                                  plus vocab-file variants, bad input and API errors
 *   test_tokenizer --data          every sentence and pair of ../shared/data with the real
 *                                  vocab; the fixture is generated into the build folder by
 *                                  tests/fixtures/gen_tokenizer.py --data (skips without data
 *                                  or transformers)
 *   test_tokenizer --unicode       every assigned code point through the basic tokenizer
 *                                  (generated the same way; skips without transformers)
 *
 * Mismatches are reported with the text, its source and the first differing position. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "io/tokenizer.h"
#include "nn/error.h"
#include "tests/support/check.h"
#include "tests/support/fixture.h"

typedef struct {
    const char *bytes;
    const int32_t *off;
    int n;
} strtab;

typedef struct {
    const int32_t *v;
    const int32_t *off;
    int n;
} ragged;

static strtab get_strings(const agfx *fx, const char *name) {
    char b[128], o[128];
    size_t nb, no;
    snprintf(b, sizeof b, "%s_bytes", name);
    snprintf(o, sizeof o, "%s_off", name);
    strtab s = {(const char *)agfx_i32(fx, b, &nb), agfx_i32(fx, o, &no), 0};
    s.n = (int)no - 1;
    return s;
}

static const char *str_at(strtab s, int i, size_t *len) {
    *len = (size_t)(s.off[i + 1] - s.off[i]);
    return s.bytes + s.off[i];
}

static ragged get_ragged(const agfx *fx, const char *name) {
    char o[128];
    size_t no;
    snprintf(o, sizeof o, "%s_off", name);
    ragged r = {agfx_i32(fx, name, NULL), agfx_i32(fx, o, &no), 0};
    r.n = (int)no - 1;
    return r;
}

/* A text for messages: printable ASCII and UTF-8 as is, other bytes escaped, cut short. */
static const char *show(const char *s, size_t len) {
    static char buf[400];
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < sizeof buf; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 32 || c == 127) o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", c);
        else buf[o++] = (char)c;
    }
    if (o + 8 >= sizeof buf) { memcpy(buf + o, "...", 3); o += 3; }
    buf[o] = 0;
    return buf;
}

static void print_ids(const char *tag, const int32_t *a, int n) {
    fprintf(stderr, "    %s (%d):", tag, n);
    for (int i = 0; i < n && i < 60; i++) fprintf(stderr, " %d", a[i]);
    fprintf(stderr, n > 60 ? " ...\n" : "\n");
}

/* Compare two id lists; on mismatch print the first difference and both lists. */
static int same_ids(const int32_t *got, int ng, const int32_t *want, int nw, int verbose, const char *what,
                    const char *text, size_t tlen) {
    int i = 0;
    while (i < ng && i < nw && got[i] == want[i]) i++;
    if (i == ng && i == nw) return 1;
    if (verbose) {
        fprintf(stderr, "FAIL %s: text \"%s\": first difference at position %d\n", what, show(text, tlen), i);
        print_ids("argent", got, ng);
        print_ids("huggingface", want, nw);
    }
    return 0;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* ------------------------------------------------------------------ committed edge cases */

static void write_file(const char *path, const char *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { fprintf(stderr, "cannot write %s\n", path); exit(1); }
    fwrite(bytes, 1, n, f);
    fclose(f);
}

static char *read_all(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

/* The same vocab with other line endings must give the same tokenizer; broken vocabs must
 * give errors that name the file. */
static void test_vocab_variants(const char *vocab_path, const ag_tokenizer *ref) {
    size_t n = 0;
    char *lf = read_all(vocab_path, &n);
    if (!check_true("read synthetic vocab", lf != NULL)) return;
    char *alt = malloc(2 * n + 16);
    const char *probe = "hello tokenizers, naïve café! unaffable";
    int32_t *want = NULL, *got = NULL;
    int nw = 0, cw = 0, ng = 0, cg = 0;
    ag_tok_wordpieces(ref, probe, strlen(probe), &want, &nw, &cw);
    const char *endings[] = {"\r\n", "\r"};
    for (int e = 0; e < 3; e++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (lf[i] == '\n' && e < 2) { memcpy(alt + m, endings[e], strlen(endings[e])); m += strlen(endings[e]); }
            else alt[m++] = lf[i];
        }
        if (e == 2) m--; /* no newline after the last line */
        char path[600];
        snprintf(path, sizeof path, "%s/tok_vocab_variant%d.txt", ARGENT_BUILD_DIR, e);
        write_file(path, alt, m);
        ag_tokenizer *tk = ag_tokenizer_load(path, 1);
        char what[100];
        snprintf(what, sizeof what, "vocab variant %d (CRLF, CR, no final newline) loads", e);
        if (!check_true(what, tk != NULL)) { fprintf(stderr, "    %s\n", ag_errmsg()); continue; }
        ng = 0;
        ag_tok_wordpieces(tk, probe, strlen(probe), &got, &ng, &cg);
        snprintf(what, sizeof what, "vocab variant %d: same size and ids", e);
        check_true(what, ag_tokenizer_vocab_size(tk) == ag_tokenizer_vocab_size(ref) &&
                             same_ids(got, ng, want, nw, 1, what, probe, strlen(probe)));
        ag_tokenizer_free(tk);
    }
    struct {
        const char *name, *bytes, *expect;
        size_t len;
    } bad[] = {
        {"missing_unk", "[PAD]\n[CLS]\n[SEP]\nhello\n", "no [UNK] token", 0},
        {"bad_utf8", "[UNK]\n[CLS]\n[SEP]\nca\xff\n", "line 4: invalid UTF-8", 0},
        {"empty", "", "empty", 0},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char path[600], what[160];
        snprintf(path, sizeof path, "%s/tok_vocab_%s.txt", ARGENT_BUILD_DIR, bad[k].name);
        write_file(path, bad[k].bytes, strlen(bad[k].bytes));
        ag_tokenizer *tk = ag_tokenizer_load(path, 1);
        snprintf(what, sizeof what, "vocab %s: error naming the file and \"%s\"", bad[k].name, bad[k].expect);
        int ok = tk == NULL && strstr(ag_errmsg(), path) && strstr(ag_errmsg(), bad[k].expect);
        if (!check_true(what, ok)) fprintf(stderr, "    got: %s\n", tk ? "(loaded)" : ag_errmsg());
        ag_tokenizer_free(tk);
    }
    ag_tokenizer *tk = ag_tokenizer_load("/nonexistent/vocab.txt", 1);
    check_true("missing vocab file: error naming it", tk == NULL && strstr(ag_errmsg(), "/nonexistent/vocab.txt"));
    free(lf);
    free(alt);
    free(want);
    free(got);
}

/* Where the first invalid UTF-8 sequence starts (utf8proc's decoder), or -1. */
static long long first_invalid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (l <= 0) return (long long)i;
        i += (size_t)l;
    }
    return -1;
}

/* Random bytes and pathological inputs: never a crash (this runs under ASan/UBSan), an
 * error exactly when the bytes are not UTF-8, at the offset another decoder finds, and
 * linear time on long inputs. */
static void test_garbage(const ag_tokenizer *tk) {
    static const char *frag[] = {"a", "Z", " ", "\xce\xa3", "'", "[", "[SEP]", "]", "\xcc\x81", "\x01", "\xe4\xb8\xad",
                                 "\xf0\x9f\x98\x80", "\xe2\x80\x8b", "\xc4\xb0", "\xed\xa0\x80", "\xc0\x80",
                                 "\xf4\x90\x80\x80", "\xe2\x82", "\x80", "\xff"};
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    char buf[200];
    int32_t *ids = NULL;
    int n = 0, cap = 0, bad = 0, nvalid = 0, ninvalid = 0;
    for (int it = 0; it < 20000; it++) {
        size_t len = 0;
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int parts = (int)(x >> 59);
        for (int p = 0; p < parts && len + 8 < sizeof buf; p++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            if ((x >> 60) < 4) buf[len++] = (char)(x >> 40); /* any byte */
            else {
                const char *f = frag[(x >> 33) % (sizeof frag / sizeof frag[0])];
                memcpy(buf + len, f, strlen(f));
                len += strlen(f);
            }
        }
        long long want = first_invalid(buf, len);
        n = 0;
        int rc = ag_tok_wordpieces(tk, buf, len, &ids, &n, &cap);
        char *w = ag_tok_basic(tk, buf, len);
        char msg[64];
        snprintf(msg, sizeof msg, "byte offset %lld", want);
        int ok = want < 0 ? rc == 0 && w != NULL : rc == -1 && w == NULL && strstr(ag_errmsg(), msg);
        if (!ok && bad++ < 5)
            fprintf(stderr, "FAIL random bytes \"%s\": rc %d, want invalid at %lld (%s)\n", show(buf, len), rc, want,
                    rc ? ag_errmsg() : "");
        nvalid += want < 0;
        ninvalid += want >= 0;
        free(w);
    }
    char what[160];
    snprintf(what, sizeof what, "20000 random byte strings (%d valid, %d not): errors exactly on invalid UTF-8",
             nvalid, ninvalid);
    check_true(what, bad == 0 && nvalid > 1000 && ninvalid > 1000);

    /* 1 MB inputs */
    size_t big = 1 << 20;
    char *s = malloc(big + 16);
    memset(s, 'a', big);
    n = 0;
    int rc = ag_tok_wordpieces(tk, s, big, &ids, &n, &cap);
    check_true("1 MB word: one [UNK]", rc == 0 && n == 1 && ids[0] == ag_tok_unk(tk));
    memset(s, '[', big);
    n = 0;
    rc = ag_tok_wordpieces(tk, s, big, &ids, &n, &cap);
    check_true("1 MB of '[': one piece each", rc == 0 && n == (int)big && ids[0] == ag_tok_id(tk, "["));
    for (size_t i = 0; i + 3 <= big; i += 3) memcpy(s + i, "\xce\xa3'", 3); /* "Σ'" repeated: sigma scans */
    n = 0;
    rc = ag_tok_wordpieces(tk, s, big / 3 * 3, &ids, &n, &cap);
    check_true("1 MB of sigma + apostrophe: done", rc == 0 && n > 0);
    s[0] = '[';
    memset(s + 1, 1, big - 3);
    memcpy(s + big - 2, " x", 2);
    n = 0;
    rc = ag_tok_wordpieces(tk, s, big, &ids, &n, &cap);
    check_true("'[' + 1 MB of dropped controls + \" x\"", rc == 0 && n == 2 && ids[1] == ag_tok_id(tk, "x"));
    free(s);
    free(ids);
}

static int run_edge(void) {
    char fpath[600], vpath[600];
    snprintf(fpath, sizeof fpath, "%s/tokenizer_edge.agfx", ARGENT_FIXTURES);
    snprintf(vpath, sizeof vpath, "%s/tokenizer_vocab.txt", ARGENT_FIXTURES);
    agfx fx;
    if (agfx_load(&fx, fpath)) return 1;
    ag_tokenizer *tk = ag_tokenizer_load(vpath, 1);
    if (!tk) { fprintf(stderr, "FAIL load %s: %s\n", vpath, ag_errmsg()); return 1; }

    /* vocab facts */
    size_t hl;
    const char *hash = str_at(get_strings(&fx, "vocab_sha256"), 0, &hl);
    check_true("vocab sha256 = Python hashlib's", hl == 64 && memcmp(hash, ag_tokenizer_vocab_hash(tk), 64) == 0);
    check_true("vocab size", ag_tokenizer_vocab_size(tk) == (int)agfx_scalar(&fx, "vocab_size"));
    const int32_t *sp = agfx_i32(&fx, "special_ids", NULL);
    check_true("special ids [PAD] [UNK] [CLS] [SEP] [MASK]",
               ag_tok_pad(tk) == sp[0] && ag_tok_unk(tk) == sp[1] && ag_tok_cls(tk) == sp[2] &&
                   ag_tok_sep(tk) == sp[3] && ag_tok_mask(tk) == sp[4]);
    int32_t hello = ag_tok_id(tk, "hello");
    check_true("duplicate vocab line: the last id wins", hello == ag_tokenizer_vocab_size(tk) - 1);
    check_true("piece/id round trip", ag_tok_id(tk, ag_tok_piece(tk, 17)) == 17 &&
                                          ag_tok_id(tk, "##izer") >= 0 &&
                                          strcmp(ag_tok_piece(tk, ag_tok_id(tk, "##izer")), "##izer") == 0);
    check_true("piece out of range is NULL", ag_tok_piece(tk, -1) == NULL && ag_tok_piece(tk, 1 << 20) == NULL);

    /* word pieces and basic words of every edge text */
    strtab texts = get_strings(&fx, "text"), words = get_strings(&fx, "words");
    ragged want = get_ragged(&fx, "pieces");
    const int32_t *fast_agrees = agfx_i32(&fx, "fast_agrees", NULL);
    int32_t *ids = NULL;
    int n = 0, cap = 0, bad_ids = 0, bad_words = 0, fast_diff = 0;
    int32_t **mine = calloc((size_t)texts.n, sizeof *mine);
    int *mine_n = calloc((size_t)texts.n, sizeof *mine_n);
    for (int i = 0; i < texts.n; i++) {
        size_t len;
        const char *t = str_at(texts, i, &len);
        n = 0;
        if (ag_tok_wordpieces(tk, t, len, &ids, &n, &cap)) {
            fprintf(stderr, "FAIL edge %d \"%s\": %s\n", i, show(t, len), ag_errmsg());
            bad_ids++;
            continue;
        }
        const int32_t *w = want.v + want.off[i];
        if (!same_ids(ids, n, w, want.off[i + 1] - want.off[i], 1, "edge word pieces", t, len)) bad_ids++;
        mine[i] = malloc(((size_t)n + 1) * sizeof *ids);
        if (n) memcpy(mine[i], ids, (size_t)n * sizeof *ids);
        mine_n[i] = n;
        fast_diff += !fast_agrees[i];
        size_t wl;
        const char *ww = str_at(words, i, &wl);
        char *got = ag_tok_basic(tk, t, len);
        if (!got || strlen(got) != wl || memcmp(got, ww, wl) != 0) {
            fprintf(stderr, "FAIL edge basic words: text \"%s\"\n", show(t, len));
            fprintf(stderr, "    argent:      \"%s\"\n", got ? show(got, strlen(got)) : ag_errmsg());
            fprintf(stderr, "    huggingface: \"%s\"\n", show(ww, wl));
            bad_words++;
        }
        free(got);
    }
    char what[200];
    snprintf(what, sizeof what, "%d edge texts: word pieces identical to the Python tokenizer", texts.n);
    check_true(what, bad_ids == 0);
    snprintf(what, sizeof what, "%d edge texts: basic-tokenizer words identical", texts.n);
    check_true(what, bad_words == 0);
    printf("note: the Rust tokenizer itself differs from the Python one on %d of the %d edge texts "
           "(final sigma, never_split specials, unassigned code points)\n", fast_diff, texts.n);

    /* appending: a second call adds after what is there */
    {
        int32_t *acc = NULL;
        int na = 0, ca = 0;
        size_t l0, l1;
        const char *t0 = str_at(texts, 4, &l0), *t1 = str_at(texts, 5, &l1);
        ag_tok_wordpieces(tk, t0, l0, &acc, &na, &ca);
        ag_tok_wordpieces(tk, t1, l1, &acc, &na, &ca);
        int ok = na == mine_n[4] + mine_n[5] && memcmp(acc, mine[4], (size_t)mine_n[4] * 4) == 0 &&
                 memcmp(acc + mine_n[4], mine[5], (size_t)mine_n[5] * 4) == 0;
        check_true("wordpieces appends to *ids", ok);
        free(acc);
    }

    /* cased tokenizer */
    {
        ag_tokenizer *ct = ag_tokenizer_load(vpath, 0);
        strtab ctext = get_strings(&fx, "cased_text");
        ragged cw = get_ragged(&fx, "cased_pieces");
        int bad = 0;
        for (int i = 0; ct && i < ctext.n; i++) {
            size_t len;
            const char *t = str_at(ctext, i, &len);
            n = 0;
            if (ag_tok_wordpieces(ct, t, len, &ids, &n, &cap) ||
                !same_ids(ids, n, cw.v + cw.off[i], cw.off[i + 1] - cw.off[i], 1, "cased word pieces", t, len))
                bad++;
        }
        snprintf(what, sizeof what, "%d texts with do_lower_case=0 identical", ctext.n);
        check_true(what, ct && bad == 0 && ag_tokenizer_lower(ct) == 0);
        ag_tokenizer_free(ct);
    }

    /* [CLS] a [SEP] */
    {
        size_t nc;
        const int32_t *cs = agfx_i32(&fx, "single_case", &nc);
        ragged sw = get_ragged(&fx, "single_ids");
        int bad = 0;
        int32_t out[128], types[128];
        for (int k = 0; k < (int)nc / 2; k++) {
            int i = cs[2 * k], ml = cs[2 * k + 1];
            int len = ag_tok_build_single(tk, mine[i], mine_n[i], ml, out, types);
            size_t tl;
            const char *t = str_at(texts, i, &tl);
            int ok = same_ids(out, len, sw.v + sw.off[k], sw.off[k + 1] - sw.off[k], 1, "single", t, tl);
            for (int j = 0; j < len; j++) ok &= types[j] == 0;
            bad += !ok;
        }
        snprintf(what, sizeof what, "%d single sequences at max_len 2/3/5/128 identical", (int)nc / 2);
        check_true(what, bad == 0);
        check_true("single: max_len 1 is an error", ag_tok_build_single(tk, mine[4], mine_n[4], 1, out, types) < 0);
    }

    /* pairs, both truncation styles */
    {
        strtab pa = get_strings(&fx, "pair_a"), pb = get_strings(&fx, "pair_b");
        size_t np;
        const int32_t *pml = agfx_i32(&fx, "pair_max_len", &np);
        ragged wf = get_ragged(&fx, "pair_fast"), wl = get_ragged(&fx, "pair_legacy");
        const int32_t *f0 = agfx_i32(&fx, "pair_fast_type0", NULL), *l0 = agfx_i32(&fx, "pair_legacy_type0", NULL);
        int bad = 0;
        int32_t *ia = NULL, *ib = NULL;
        int na, nb, ca = 0, cb = 0;
        int32_t out[64], types[64];
        for (int k = 0; k < (int)np; k++) {
            size_t la, lb;
            const char *a = str_at(pa, k, &la), *b = str_at(pb, k, &lb);
            na = nb = 0;
            ag_tok_wordpieces(tk, a, la, &ia, &na, &ca);
            ag_tok_wordpieces(tk, b, lb, &ib, &nb, &cb);
            for (int style = 0; style < 2; style++) {
                int len = style ? ag_tok_build_pair_style(tk, ia, na, ib, nb, pml[k], AG_TRUNC_LEGACY, out, types)
                                : ag_tok_build_pair(tk, ia, na, ib, nb, pml[k], out, types);
                const ragged *w = style ? &wl : &wf;
                int t0 = (style ? l0 : f0)[k];
                char tag[160];
                snprintf(tag, sizeof tag, "pair (%s, max_len %d, b = \"%s\")", style ? "legacy" : "fast", pml[k],
                         show(b, lb));
                int ok = same_ids(out, len, w->v + w->off[k], w->off[k + 1] - w->off[k], 1, tag, a, la);
                for (int j = 0; j < len; j++) ok &= types[j] == (j >= t0);
                if (!ok) fprintf(stderr, "    (ids or token types differ)\n");
                bad += !ok;
            }
        }
        snprintf(what, sizeof what, "%d text pairs x 2 truncation styles identical (ids and types)", (int)np);
        check_true(what, bad == 0);
        check_true("pair: max_len 2 is an error", ag_tok_build_pair(tk, ia, na, ib, nb, 2, out, types) < 0);
        free(ia);
        free(ib);
    }

    /* truncation on lengths alone, both libraries */
    {
        size_t ng;
        const int32_t *g = agfx_i32(&fx, "trunc_grid", &ng);
        int32_t a[16], b[16], out[32], types[32];
        for (int i = 0; i < 16; i++) { a[i] = 1000 + i; b[i] = 2000 + i; }
        int bad = 0;
        for (size_t r = 0; r < ng / 7; r++) {
            const int32_t *row = g + 7 * r;
            for (int style = 0; style < 2; style++) {
                int len = ag_tok_build_pair_style(tk, a, row[0], b, row[1], row[2], (ag_trunc_style)style, out, types);
                int ka = 0, kb = 0;
                for (int j = 0; j < len; j++) { ka += out[j] >= 1000 && out[j] < 2000; kb += out[j] >= 2000; }
                int wa = row[3 + 2 * style], wb = row[4 + 2 * style];
                if (ka != wa || kb != wb) {
                    if (bad < 5)
                        fprintf(stderr, "FAIL truncation %s: na %d nb %d max_len %d: kept %d+%d, want %d+%d\n",
                                style ? "legacy" : "fast", row[0], row[1], row[2], ka, kb, wa, wb);
                    bad++;
                }
            }
        }
        snprintf(what, sizeof what, "truncation grid (%d length combinations x 2 styles)", (int)(ng / 7));
        check_true(what, bad == 0);
    }

    /* invalid UTF-8: error with Python's byte offset, *n left alone */
    {
        strtab bt = get_strings(&fx, "bad_utf8");
        const int32_t *bo = agfx_i32(&fx, "bad_utf8_offset", NULL);
        int bad = 0;
        for (int i = 0; i < bt.n; i++) {
            size_t len;
            const char *t = str_at(bt, i, &len);
            n = 3;
            if (cap < 3) { ids = realloc(ids, 16 * sizeof *ids); cap = 16; }
            int rc = ag_tok_wordpieces(tk, t, len, &ids, &n, &cap);
            char want_msg[64];
            snprintf(want_msg, sizeof want_msg, "byte offset %d", bo[i]);
            if (rc != -1 || n != 3 || !strstr(ag_errmsg(), want_msg)) {
                fprintf(stderr, "FAIL invalid UTF-8 \"%s\": rc %d n %d msg \"%s\", want \"%s\"\n", show(t, len), rc,
                        n, ag_errmsg(), want_msg);
                bad++;
            }
            char *w = ag_tok_basic(tk, t, len);
            if (w) { bad++; free(w); }
        }
        snprintf(what, sizeof what, "%d invalid UTF-8 inputs rejected with the byte offset", bt.n);
        check_true(what, bad == 0);
    }

    test_garbage(tk);
    test_vocab_variants(vpath, tk);

    for (int i = 0; i < texts.n; i++) free(mine[i]);
    free(mine);
    free(mine_n);
    free(ids);
    ag_tokenizer_free(tk);
    agfx_free(&fx);
    return check_finish();
}

/* ------------------------------------------------------------------ generated at test time */

/* Run the generator unless its output is newer than the script. Skips (exit 77) when
 * python3 or transformers is missing. */
static void generate(const char *mode, const char *out) {
    char script[600], cmd[2000];
    snprintf(script, sizeof script, "%s/gen_tokenizer.py", ARGENT_FIXTURES);
    struct stat so, ss;
    if (stat(out, &so) == 0 && stat(script, &ss) == 0 && so.st_mtime > ss.st_mtime) {
        printf("using %s (newer than the generator)\n", out);
        return;
    }
    if (system("HF_HUB_OFFLINE=1 python3 -c 'import transformers, tokenizers, numpy' >/dev/null 2>&1") != 0)
        check_skip("python3 with transformers, tokenizers and numpy is needed to generate the expected ids");
    snprintf(cmd, sizeof cmd, "HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false python3 '%s' %s '%s.tmp' --shared '%s' && mv '%s.tmp' '%s'",
             script, mode, out, ARGENT_SHARED, out, out);
    printf("generating: %s\n", cmd);
    fflush(stdout);
    if (system(cmd) != 0) { fprintf(stderr, "FAIL generator: %s\n", cmd); exit(1); }
}

static int run_data(void) {
    char vocab[600], out[600];
    snprintf(vocab, sizeof vocab, "%s/data/vocab/bert-base-uncased-vocab.txt", ARGENT_SHARED);
    if (!file_exists(vocab)) check_skip("no ../shared/data (the real-data tokenizer test needs its vocab and data sets)");
    snprintf(out, sizeof out, "%s/tokenizer_data.agfx", ARGENT_BUILD_DIR);
    generate("--data", out);
    agfx fx;
    if (agfx_load(&fx, out)) return 1;
    ag_tokenizer *tk = ag_tokenizer_load(vocab, 1);
    if (!tk) { fprintf(stderr, "FAIL %s\n", ag_errmsg()); return 1; }
    check_true("real vocab: 30522 ids, [PAD] 0 [UNK] 100 [CLS] 101 [SEP] 102 [MASK] 103",
               ag_tokenizer_vocab_size(tk) == 30522 && ag_tok_pad(tk) == 0 && ag_tok_unk(tk) == 100 &&
                   ag_tok_cls(tk) == 101 && ag_tok_sep(tk) == 102 && ag_tok_mask(tk) == 103);

    strtab texts = get_strings(&fx, "text"), where = get_strings(&fx, "where");
    ragged want = get_ragged(&fx, "pieces"), s128 = get_ragged(&fx, "single128");
    int32_t **mine = calloc((size_t)texts.n, sizeof *mine);
    int *mine_n = calloc((size_t)texts.n, sizeof *mine_n);
    int32_t *ids = NULL;
    int n = 0, cap = 0, bad = 0, bad1 = 0;
    long long ntok = 0;
    int32_t out_ids[128], types[128];
    for (int i = 0; i < texts.n; i++) {
        size_t len, wl;
        const char *t = str_at(texts, i, &len);
        n = 0;
        int rc = ag_tok_wordpieces(tk, t, len, &ids, &n, &cap);
        mine[i] = malloc(((size_t)n + 1) * sizeof *ids);
        if (n) memcpy(mine[i], ids, (size_t)n * sizeof *ids);
        mine_n[i] = n;
        ntok += n;
        if (rc || !same_ids(ids, n, want.v + want.off[i], want.off[i + 1] - want.off[i], bad == 0, "data", t, len)) {
            const char *w = str_at(where, i, &wl);
            if (bad == 0) fprintf(stderr, "    at %.*s %s\n", (int)wl, w, rc ? ag_errmsg() : "");
            bad++;
        }
        int l1 = ag_tok_build_single(tk, mine[i], n, 128, out_ids, types);
        if (!same_ids(out_ids, l1, s128.v + s128.off[i], s128.off[i + 1] - s128.off[i], bad1 == 0, "single 128", t, len))
            bad1++;
    }
    char what[200];
    snprintf(what, sizeof what, "%d unique data texts (%lld pieces): word pieces identical (%d differ)", texts.n,
             ntok, bad);
    check_true(what, bad == 0);
    snprintf(what, sizeof what, "%d texts: [CLS] a [SEP] at 128 identical (%d differ)", texts.n, bad1);
    check_true(what, bad1 == 0);
    printf("note: the Rust tokenizer's pieces differ from the Python one's on %d data texts\n",
           (int)agfx_scalar(&fx, "fast_pieces_differ"));

    size_t np;
    const int32_t *pair = agfx_i32(&fx, "pair", &np);
    np /= 2;
    const int lens[2] = {128, 32};
    for (int li = 0; li < 2; li++) {
        for (int style = 0; style < 2; style++) {
            char name[32], tname[40];
            snprintf(name, sizeof name, "%s%d", style ? "legacy" : "fast", lens[li]);
            snprintf(tname, sizeof tname, "%s_type0", name);
            ragged w = get_ragged(&fx, name);
            const int32_t *t0 = agfx_i32(&fx, tname, NULL);
            int badp = 0, cut = 0;
            for (size_t k = 0; k < np; k++) {
                int a = pair[2 * k], b = pair[2 * k + 1];
                int len = ag_tok_build_pair_style(tk, mine[a], mine_n[a], mine[b], mine_n[b], lens[li],
                                                  (ag_trunc_style)style, out_ids, types);
                cut += mine_n[a] + mine_n[b] + 3 > lens[li];
                int ok = same_ids(out_ids, len, w.v + w.off[k], w.off[k + 1] - w.off[k], badp == 0, name,
                                  str_at(texts, a, &(size_t){0}), (size_t)(texts.off[a + 1] - texts.off[a]));
                for (int j = 0; j < len; j++) ok &= types[j] == (j >= t0[k]);
                if (!ok && badp == 0) {
                    size_t wl;
                    const char *wh = str_at(where, a, &wl);
                    fprintf(stderr, "    pair %zu at %.*s, b = \"%s\"\n", k, (int)wl, wh,
                            show(texts.bytes + texts.off[b], (size_t)(texts.off[b + 1] - texts.off[b])));
                }
                badp += !ok;
            }
            snprintf(what, sizeof what, "%zu pairs at max_len %d, %s truncation (%d truncated): identical (%d differ)",
                     np, lens[li], style ? "Python (legacy)" : "Rust (fast)", cut, badp);
            check_true(what, badp == 0);
        }
    }
    for (int i = 0; i < texts.n; i++) free(mine[i]);
    free(mine);
    free(mine_n);
    free(ids);
    ag_tokenizer_free(tk);
    agfx_free(&fx);
    return check_finish();
}

static int run_unicode(void) {
    char out[600], vpath[600];
    snprintf(out, sizeof out, "%s/tokenizer_unicode.agfx", ARGENT_BUILD_DIR);
    snprintf(vpath, sizeof vpath, "%s/tokenizer_vocab.txt", ARGENT_FIXTURES);
    generate("--unicode", out);
    agfx fx;
    if (agfx_load(&fx, out)) return 1;
    ag_tokenizer *tk = ag_tokenizer_load(vpath, 1);
    if (!tk) { fprintf(stderr, "FAIL %s\n", ag_errmsg()); return 1; }
    size_t nall;
    const int32_t *cp_all = agfx_i32(&fx, "cp_all", &nall), *cat_all = agfx_i32(&fx, "cat_all", NULL);
    const int32_t *cp = agfx_i32(&fx, "cp", NULL), *ver = agfx_i32(&fx, "unidata_version", NULL);
    /* code points whose category differs between Python's Unicode and utf8proc's */
    int ngap = 0;
    unsigned char *gap = calloc(0x110000, 1);
    for (size_t i = 0; i < nall; i++) {
        if ((int)utf8proc_category(cp_all[i]) != cat_all[i]) { gap[cp_all[i]] = 1; ngap++; }
    }
    strtab texts = get_strings(&fx, "text"), words = get_strings(&fx, "words");
    int bad = 0, skipped = 0;
    for (int i = 0; i < texts.n; i++) {
        size_t len, wl;
        const char *t = str_at(texts, i, &len);
        const char *w = str_at(words, i, &wl);
        char *got = ag_tok_basic(tk, t, len);
        int ok = got && strlen(got) == wl && memcmp(got, w, wl) == 0;
        if (!ok && cp[i] >= 0 && gap[cp[i]]) { skipped++; ok = 1; }
        if (!ok) {
            if (bad < 20) {
                if (cp[i] >= 0) fprintf(stderr, "FAIL U+%04X: text \"%s\"\n", cp[i], show(t, len));
                else fprintf(stderr, "FAIL random text \"%s\"\n", show(t, len));
                fprintf(stderr, "    argent:      \"%s\"\n", got ? show(got, strlen(got)) : ag_errmsg());
                fprintf(stderr, "    huggingface: \"%s\"\n", show(w, wl));
            }
            bad++;
        }
        free(got);
    }
    printf("Python unicodedata %d.%d.%d, utf8proc %s: %d of %zu code points change category between the two; "
           "%d texts differ only because of that\n",
           ver[0], ver[1], ver[2], utf8proc_unicode_version(), ngap, nall, skipped);
    char what[200];
    snprintf(what, sizeof what, "%d texts (%zu code points, random mixes): basic-tokenizer words identical (%d differ)",
             texts.n, nall, bad);
    check_true(what, bad == 0);
    free(gap);
    ag_tokenizer_free(tk);
    agfx_free(&fx);
    return check_finish();
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--data") == 0) return run_data();
    if (argc > 1 && strcmp(argv[1], "--unicode") == 0) return run_unicode();
    return run_edge();
}
