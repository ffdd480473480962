/* Tokenizer throughput on one thread: word pieces per second over a file of texts (one per
 * line), repeated until at least min_seconds have passed. Driven by bench_tokenizer.py,
 * which compares it with Hugging Face's tokenizers in the same run.
 * Usage: bench_tokenizer VOCAB TEXTS [min_seconds]  -> one line of JSON on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/tokenizer.h"
#include "nn/error.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s VOCAB TEXTS [min_seconds]\n", argv[0]); return 2; }
    double min_s = argc > 3 ? atof(argv[3]) : 2.0;
    ag_tokenizer *tk = ag_tokenizer_load(argv[1], 1);
    if (!tk) { fprintf(stderr, "%s\n", ag_errmsg()); return 1; }
    FILE *f = fopen(argv[2], "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", argv[2]); return 1; }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)sz + 1);
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) { fprintf(stderr, "short read %s\n", argv[2]); return 1; }
    fclose(f);
    /* lines -> (start, length) */
    int nt = 0, ct = 1024;
    size_t *st = malloc((size_t)ct * sizeof *st), *ln = malloc((size_t)ct * sizeof *ln);
    for (size_t i = 0; i < (size_t)sz;) {
        size_t j = i;
        while (j < (size_t)sz && buf[j] != '\n') j++;
        if (nt == ct) {
            ct *= 2;
            st = realloc(st, (size_t)ct * sizeof *st);
            ln = realloc(ln, (size_t)ct * sizeof *ln);
        }
        st[nt] = i;
        ln[nt++] = j - i;
        i = j + 1;
    }
    int32_t *ids = NULL;
    int n = 0, cap = 0, reps = 0;
    long long tokens = 0;
    double t0 = now(), t;
    do {
        for (int k = 0; k < nt; k++) {
            n = 0;
            if (ag_tok_wordpieces(tk, buf + st[k], ln[k], &ids, &n, &cap)) {
                fprintf(stderr, "%s line %d: %s\n", argv[2], k + 1, ag_errmsg());
                return 1;
            }
            tokens += n;
        }
        reps++;
        t = now() - t0;
    } while (t < min_s);
    printf("{\"texts\": %d, \"tokens\": %lld, \"repeats\": %d, \"seconds\": %.6f, \"tokens_per_s\": %.1f}\n", nt,
           tokens / reps, reps, t / reps, (double)tokens / t);
    free(ids);
    free(buf);
    free(st);
    free(ln);
    ag_tokenizer_free(tk);
    return 0;
}
