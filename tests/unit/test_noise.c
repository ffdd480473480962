/* TSDAE deletion noise (nn/noise): the documented keying of every decision, statistics
 * (keep rate 1 - del_ratio per word and per position, the "keep one word" fallback and its
 * uniform pick), determinism and fresh noise per epoch, the whitespace rule (Python
 * str.split, Unicode spaces included), in-place use, and the errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "nn/noise.h"
#include "nn/rng.h"
#include "tests/support/check.h"

static int delete(const char *text, float r, uint64_t seed, uint64_t sample, uint32_t epoch,
                  char *out, size_t cap, int *nw, int *nk) {
    int rc = ag_noise_delete(text, r, seed, sample, epoch, out, cap, nw, nk);
    if (rc) printf("     error: %s\n", ag_errmsg());
    return rc;
}

/* The output is exactly the words whose draw is >= del_ratio, in order, space-joined. */
static void test_keying(void) {
    const char *words[] = {"the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "today"};
    const int n = 10;
    char text[256] = "", out[256], want[256];
    for (int i = 0; i < n; i++) { strcat(text, words[i]); strcat(text, i % 3 ? " " : "  \t"); }
    int ok = 1, fallback_seen = 0;
    for (uint64_t s = 0; s < 300; s++) {
        int nw, nk;
        if (delete(text, 0.6f, 42, s, 3, out, sizeof out, &nw, &nk)) { ok = 0; break; }
        want[0] = '\0';
        int kept = 0;
        for (int i = 0; i < n; i++)
            if (ag_rng_uniform(42, AG_RNG_NOISE, s, 3, (uint64_t)i) >= 0.6f) {
                if (kept++) strcat(want, " ");
                strcat(want, words[i]);
            }
        if (kept == 0) {  /* fallback: one word, picked by the documented draw */
            uint32_t u = ag_rng_u32(42, AG_RNG_NOISE, s, 3, AG_NOISE_PICK_INDEX);
            strcpy(want, words[((uint64_t)u * n) >> 32]);
            kept = 1;
            fallback_seen++;
        }
        if (strcmp(out, want) != 0 || nw != n || nk != kept) {
            printf("     sample %llu: got '%s' (%d/%d), want '%s' (%d/%d)\n",
                   (unsigned long long)s, out, nk, nw, want, kept, n);
            ok = 0;
            break;
        }
    }
    check_true("output = the words with draw >= del_ratio, in order, single spaces (300 samples)", ok);
    printf("     (fallback used in %d of 300)\n", fallback_seen);
}

static void test_statistics(void) {
    /* 20 words, 20000 sentences: keep rate per word and per position. */
    char text[128] = "", out[128];
    for (int i = 0; i < 20; i++) { char w[8]; snprintf(w, sizeof w, "%c%c ", 'a' + i, 'a' + i); strcat(text, w); }
    const int S = 20000;
    long pos_kept[20] = {0}, total = 0;
    for (int s = 0; s < S; s++) {
        int nw, nk;
        delete(text, 0.6f, 7, (uint64_t)s, 0, out, sizeof out, &nw, &nk);
        total += nk;
        for (int i = 0; i < 20; i++) {
            char w[3] = {(char)('a' + i), (char)('a' + i), 0};
            pos_kept[i] += strstr(out, w) != NULL;
        }
    }
    double rate = (double)total / (20.0 * S);
    printf("     keep rate %.4f (expected 0.4, std of the estimate 0.0008)\n", rate);
    check_true("keep rate 1 - 0.6 over 400k words (within 0.004)", fabs(rate - 0.4) < 0.004);
    double worst = 0;
    for (int i = 0; i < 20; i++) worst = fmax(worst, fabs(pos_kept[i] / (double)S - 0.4));
    check_true("keep rate the same at every position (each within 0.02)", worst < 0.02);

    /* del_ratio 0.25 too. */
    total = 0;
    for (int s = 0; s < S / 4; s++) {
        int nk;
        delete(text, 0.25f, 8, (uint64_t)s, 1, out, sizeof out, NULL, &nk);
        total += nk;
    }
    rate = (double)total / (20.0 * (S / 4));
    check_true("keep rate 1 - 0.25 (within 0.008)", fabs(rate - 0.75) < 0.008);

    /* Three words: P(1 kept) = 3·0.4·0.36 + 0.6^3 (fallback) = 0.648, P(2) = 0.288, P(3) = 0.064. */
    long hist[4] = {0};
    for (int s = 0; s < S; s++) {
        int nk;
        delete("one two three", 0.6f, 9, (uint64_t)s, 0, out, sizeof out, NULL, &nk);
        hist[nk]++;
    }
    printf("     3 words: kept 1/2/3 = %.4f %.4f %.4f (want 0.648 0.288 0.064)\n",
           hist[1] / (double)S, hist[2] / (double)S, hist[3] / (double)S);
    check_true("3 words: never empty, kept-count distribution with the fallback",
               hist[0] == 0 && fabs(hist[1] / (double)S - 0.648) < 0.015 &&
                   fabs(hist[2] / (double)S - 0.288) < 0.015 && fabs(hist[3] / (double)S - 0.064) < 0.008);

    /* del_ratio 1: exactly one word, picked uniformly. */
    long pick[5] = {0};
    const char *five[] = {"v", "w", "x", "y", "z"};
    int ok = 1;
    for (int s = 0; s < S / 2; s++) {
        int nk;
        delete("v w x y z", 1.0f, 11, (uint64_t)s, 2, out, sizeof out, NULL, &nk);
        int hit = -1;
        for (int i = 0; i < 5; i++) if (!strcmp(out, five[i])) hit = i;
        if (hit < 0 || nk != 1) ok = 0; else pick[hit]++;
    }
    double pw = 0;
    for (int i = 0; i < 5; i++) pw = fmax(pw, fabs(pick[i] / (double)(S / 2) - 0.2));
    check_true("del_ratio 1: exactly one word, uniform pick (each within 0.02)", ok && pw < 0.02);

    /* One word always survives (kept, or picked by the fallback). */
    ok = 1;
    for (int s = 0; s < 1000; s++) {
        delete("  solo ", 0.6f, 1, (uint64_t)s, 0, out, sizeof out, NULL, NULL);
        ok &= !strcmp(out, "solo");
    }
    check_true("a single word always survives", ok);
}

static void test_determinism(void) {
    const char *t = "a b c d e f g h i j k l m n o p q r s t";
    char o1[64], o2[64];
    int same = 1, epoch_diff = 0, sample_diff = 0, seed_diff = 0;
    for (uint64_t s = 0; s < 50; s++) {
        delete(t, 0.6f, 5, s, 0, o1, sizeof o1, NULL, NULL);
        delete(t, 0.6f, 5, s, 0, o2, sizeof o2, NULL, NULL);
        same &= !strcmp(o1, o2);
        delete(t, 0.6f, 5, s, 1, o2, sizeof o2, NULL, NULL);
        epoch_diff += strcmp(o1, o2) != 0;
        delete(t, 0.6f, 5, s + 1000, 0, o2, sizeof o2, NULL, NULL);
        sample_diff += strcmp(o1, o2) != 0;
        delete(t, 0.6f, 6, s, 0, o2, sizeof o2, NULL, NULL);
        seed_diff += strcmp(o1, o2) != 0;
    }
    check_true("same (seed, sample, epoch): same noise", same);
    check_true("noise redrawn every epoch (50 of 50 differ)", epoch_diff == 50);
    check_true("other sample index or seed: other noise", sample_diff == 50 && seed_diff == 50);

    /* No hidden state: drawing samples backwards gives the same per-sample output, so any
     * split over ranks sees the same noise. */
    char fwd[20][64];
    for (int s = 0; s < 20; s++) delete(t, 0.6f, 5, (uint64_t)s, 4, fwd[s], 64, NULL, NULL);
    same = 1;
    for (int s = 19; s >= 0; s--) {
        delete(t, 0.6f, 5, (uint64_t)s, 4, o1, sizeof o1, NULL, NULL);
        same &= !strcmp(o1, fwd[s]);
    }
    check_true("independent of call order (a pure function of the sample)", same);
}

static void test_whitespace_and_edges(void) {
    char out[128];
    int nw = -1, nk = -1;
    delete("  hello,\tworld!\n  how\r\nare\vyou\f ", 0.0f, 1, 0, 0, out, sizeof out, &nw, &nk);
    check_true("del_ratio 0 keeps all words, whitespace normalised, punctuation attached",
               !strcmp(out, "hello, world! how are you") && nw == 5 && nk == 5);
    /* U+00A0, U+3000, U+2009, U+1680, U+0085, U+2028, U+205F are str.isspace(); U+200B
     * (zero-width space) is not; é (C3 A9) and a lone continuation byte are word bytes. */
    delete("a\xc2\xa0" "b\xe3\x80\x80" "c\xe2\x80\x89" "d\xe1\x9a\x80" "e\xc2\x85" "f\xe2\x80\xa8"
           "g\xe2\x81\x9f" "h i\xe2\x80\x8bj caf\xc3\xa9 \xa0x", 0.0f, 1, 0, 0, out, sizeof out, &nw, NULL);
    check_true("Unicode whitespace splits as Python str.split()",
               !strcmp(out, "a b c d e f g h i\xe2\x80\x8bj caf\xc3\xa9 \xa0x") && nw == 11);
    delete("x\x1cy\x1fz", 0.0f, 1, 0, 0, out, sizeof out, &nw, NULL);
    check_true("U+001C..U+001F separate words (str.split does)", !strcmp(out, "x y z") && nw == 3);

    strcpy(out, "stale");
    delete("", 0.6f, 1, 0, 0, out, sizeof out, &nw, &nk);
    check_true("empty text: returned as is", !strcmp(out, "") && nw == 0 && nk == 0);
    delete(" \t\n ", 0.6f, 1, 0, 0, out, sizeof out, &nw, NULL);
    check_true("whitespace-only text: returned unchanged (ST returns the text)", !strcmp(out, " \t\n ") && nw == 0);

    /* In place gives the same as out of place, multi-byte separators included. */
    const char *t = "alpha\xe3\x80\x80" "beta  gamma\xc2\xa0\xc2\xa0" "delta epsilon zeta eta theta";
    int ok = 1;
    for (uint64_t s = 0; s < 200; s++) {
        char a[128], b[128];
        strcpy(b, t);
        delete(t, 0.5f, 3, s, 0, a, sizeof a, NULL, NULL);
        delete(b, 0.5f, 3, s, 0, b, sizeof b, NULL, NULL);
        ok &= !strcmp(a, b);
    }
    check_true("in place (out == text) equals out of place (200 draws)", ok);

    /* Errors: -1, a message, and the output untouched. */
    strcpy(out, "untouched");
    check_true("del_ratio 1.5 rejected", ag_noise_delete("a b", 1.5f, 1, 0, 0, out, sizeof out, NULL, NULL) == -1 &&
                                            strstr(ag_errmsg(), "del_ratio"));
    printf("     message: %s\n", ag_errmsg());
    check_true("del_ratio -0.1 and NaN rejected",
               ag_noise_delete("a b", -0.1f, 1, 0, 0, out, sizeof out, NULL, NULL) == -1 &&
                   ag_noise_delete("a b", NAN, 1, 0, 0, out, sizeof out, NULL, NULL) == -1);
    check_true("too small output buffer rejected",
               ag_noise_delete("a b c", 0.5f, 1, 0, 0, out, 5, NULL, NULL) == -1);
    printf("     message: %s\n", ag_errmsg());
    check_true("NULL text / output rejected",
               ag_noise_delete(NULL, 0.5f, 1, 0, 0, out, sizeof out, NULL, NULL) == -1 &&
                   ag_noise_delete("a", 0.5f, 1, 0, 0, NULL, 8, NULL, NULL) == -1);
    check_true("output untouched on failure", !strcmp(out, "untouched"));
    check_true("exact-size buffer (strlen + 1) is enough",
               ag_noise_delete("a b c", 0.0f, 1, 0, 0, out, 6, NULL, NULL) == 0 && !strcmp(out, "a b c"));
}

int main(void) {
    test_keying();
    test_statistics();
    test_determinism();
    test_whitespace_and_edges();
    return check_finish();
}
