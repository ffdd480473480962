/* `argent prepare`: read a text data set (CSV, TSV, JSON Lines or line-aligned files), keep
 * its unique sentences and its pairs with their labels, tokenise every sentence into
 * WordPiece ids, and write the HDF5 dataset of io/dataset.h (one file, or one per split).
 *
 * Every rank reads and parses the input (cheap, and it makes all ranks agree on every bad
 * row without talking); the unique sentences are cut into contiguous blocks, one per rank,
 * for tokenisation (the expensive part); rank 0 gathers the ids in sentence order and
 * writes. Nothing in the output depends on the rank count, so np 1 and np N write files
 * with the same bytes. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "dist/signals.h"
#include "io/dataset.h"
#include "io/readers.h"
#include "io/tokenizer.h"
#include "jobs/cli.h"
#include "jobs/commands.h"
#include "jobs/prepare.h"
#include "nn/error.h"
#include "nn/rng.h"

/* The Philox stream of --split ("SPLT"), apart from the streams of nn/rng.h. */
#define PREPARE_RNG_SPLIT 0x53504c54u
#define MAX_SPLITS 16
#define MAX_BAD_SHOWN 5

static const ag_cli_opt prepare_opts[] = {
    {"input", "FILE[,FILE..]", "input file; for --format lines the line-aligned files, comma-separated", NULL, 1},
    {"format", "F", "csv, tsv, jsonl or lines (default: from the extension; several files: lines)", NULL, 0},
    {"header", "yes|no", "the first CSV/TSV row names the columns (default: yes if a column is a name)", NULL, 0},
    {"a", "COL", "first sentence: column number (0-based), header name, JSON key or lines-file extension", "0", 0},
    {"b", "COL", "second sentence (omit for a dataset of sentences only)", NULL, 0},
    {"label", "COL", "label column (omit for unlabeled pairs)", NULL, 0},
    {"label-kind", "K", "score (float) or class (integer id); default class with --label-map, else score", NULL, 0},
    {"label-map", "MAP", "label text to value, e.g. entailment=1,neutral=0,contradiction=0", NULL, 0},
    {"score-scale", "LO:HI", "scores become (x-LO)/(HI-LO), e.g. 0:5; a score outside is a bad row", NULL, 0},
    {"empty-label", "WHAT", "an empty label: error (a bad row), skip (drop the row) or nan (keep, no label)", "error", 0},
    {"source", "S", "gold, silver or unlabeled; default gold with --label, else unlabeled", NULL, 0},
    {"rows", "A:B", "only data rows A..B-1 (0-based, header not counted; A or B may be left out)", NULL, 0},
    {"split", "NAME=F,..", "seeded random split of the pairs, one file each, e.g. train=0.9,dev=0.1", NULL, 0},
    {"seed", "N", "seed of --split", "1", 0},
    {"skip-bad", NULL, "skip bad rows and report how many, instead of stopping at the first", NULL, 0},
    {"vocab", "FILE", "WordPiece vocab.txt", NULL, 1},
    {"cased", NULL, "keep case (do_lower_case=0, for cased vocabularies)", NULL, 0},
    {"out", "FILE", "output .h5; with --split: out.NAME.h5, or NAME replaces {split} in FILE", NULL, 1},
    {"quiet", NULL, "no summary on stdout", NULL, 0},
    {0}};

enum { EMPTY_ERROR = 0, EMPTY_SKIP = 1, EMPTY_NAN = 2 };

typedef struct {
    ag_format fmt;
    int header;
    char *inputs_buf;
    const char *inputs[64];
    int ninputs;
    const char *col_a, *col_b, *col_label;
    ag_label_spec label;
    int empty_label;
    ag_source source;
    int64_t row_lo, row_hi;
    const char *rows_spec, *split_spec;
    int nsplit;
    char split_name[MAX_SPLITS][64];
    double split_frac[MAX_SPLITS];
    long seed;
    int skip_bad, lower, quiet;
    const char *vocab, *out;
} prep_cfg;

typedef struct {
    int64_t rows_read, rows_bad, rows_empty_label;
    char bad_msg[MAX_BAD_SHOWN][512];
} prep_stats;

/* ---- options -------------------------------------------------------------------------- */

static int is_number(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

static int parse_rows(prep_cfg *c, const char *s) {
    const char *colon = strchr(s, ':');
    if (!colon) return ag_err("--rows: '%s' is not A:B (expected e.g. 0:10000, 10000: or :500)", s);
    char *end;
    c->row_lo = 0;
    c->row_hi = INT64_MAX;
    if (colon > s) {
        long long v = strtoll(s, &end, 10);
        if (end != colon || v < 0) return ag_err("--rows: start of '%s' is not a whole number >= 0", s);
        c->row_lo = v;
    }
    if (colon[1]) {
        long long v = strtoll(colon + 1, &end, 10);
        if (*end || v < 0) return ag_err("--rows: end of '%s' is not a whole number >= 0", s);
        c->row_hi = v;
    }
    if (c->row_hi <= c->row_lo) return ag_err("--rows: '%s' selects no rows (B must be greater than A)", s);
    return 0;
}

static int parse_split(prep_cfg *c, const char *spec) {
    const char *p = spec;
    double sum = 0;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (!eq || eq == p) return ag_err("--split: '%.*s' is not NAME=FRACTION (expected e.g. train=0.9,dev=0.1)", (int)n, p);
        size_t nl = (size_t)(eq - p);
        if (c->nsplit == MAX_SPLITS) return ag_err("--split: more than %d splits", MAX_SPLITS);
        if (nl >= sizeof c->split_name[0]) return ag_err("--split: name '%.*s' too long", (int)nl, p);
        for (size_t i = 0; i < nl; i++) {
            char ch = p[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
                return ag_err("--split: name '%.*s' may use only letters, digits, _ and -", (int)nl, p);
        }
        char num[64];
        size_t vl = n - nl - 1;
        if (vl == 0 || vl >= sizeof num) return ag_err("--split: '%.*s' has no fraction", (int)n, p);
        memcpy(num, eq + 1, vl);
        num[vl] = 0;
        char *end;
        double f = strtod(num, &end);
        if (*end || !(f > 0 && f <= 1)) return ag_err("--split: fraction '%s' of '%.*s' is not in (0, 1]", num, (int)nl, p);
        for (int k = 0; k < c->nsplit; k++)
            if (strlen(c->split_name[k]) == nl && !memcmp(c->split_name[k], p, nl))
                return ag_err("--split: '%.*s' given twice", (int)nl, p);
        memcpy(c->split_name[c->nsplit], p, nl);
        c->split_name[c->nsplit][nl] = 0;
        c->split_frac[c->nsplit++] = f;
        sum += f;
        p += n;
        if (*p == ',') p++;
    }
    if (c->nsplit == 0) return ag_err("--split: empty (expected e.g. train=0.9,dev=0.1)");
    if (sum > 1 + 1e-9) return ag_err("--split: fractions add up to %g (at most 1 expected)", sum);
    return 0;
}

/* Options -> config. 0, or -1 with ag_err (a usage error). */
static int configure(prep_cfg *c, const ag_cli *cli) {
    memset(c, 0, sizeof *c);
    ag_label_spec_init(&c->label);
    c->row_hi = INT64_MAX;
    c->lower = !ag_cli_flag(cli, "cased");
    c->skip_bad = ag_cli_flag(cli, "skip-bad");
    c->quiet = ag_cli_flag(cli, "quiet");
    c->vocab = ag_cli_str(cli, "vocab");
    c->out = ag_cli_str(cli, "out");
    c->col_a = ag_cli_str(cli, "a");
    c->col_b = ag_cli_str(cli, "b");
    c->col_label = ag_cli_str(cli, "label");
    if (cli->npos) return ag_err("unexpected argument '%s' (every input is given with an option; see --help)", cli->pos[0]);

    /* inputs: a comma-separated list */
    c->inputs_buf = strdup(ag_cli_str(cli, "input"));
    if (!c->inputs_buf) return ag_err("out of memory");
    for (char *s = c->inputs_buf, *tok; (tok = strsep(&s, ","));) {
        if (!*tok) return ag_err("--input: empty file name in '%s'", ag_cli_str(cli, "input"));
        if (c->ninputs == (int)(sizeof c->inputs / sizeof c->inputs[0])) return ag_err("--input: too many files");
        c->inputs[c->ninputs++] = tok;
    }
    if (ag_cli_given(cli, "format")) {
        if (ag_format_parse(ag_cli_str(cli, "format"), &c->fmt)) return ag_err_ctx("--format");
    } else if (c->ninputs > 1) {
        c->fmt = AG_FMT_LINES;
    } else if (ag_format_guess(c->inputs[0], &c->fmt)) {
        return -1;
    }
    if (c->ninputs > 1 && c->fmt != AG_FMT_LINES)
        return ag_err("--input: %d files given but --format %s reads one (only lines reads several)", c->ninputs,
                      ag_format_name(c->fmt));

    /* header: explicit, or implied by a column given by name */
    int named = !is_number(c->col_a) || (c->col_b && !is_number(c->col_b)) || (c->col_label && !is_number(c->col_label));
    if (ag_cli_given(cli, "header")) {
        const char *h = ag_cli_str(cli, "header");
        if (!strcmp(h, "yes")) c->header = 1;
        else if (!strcmp(h, "no")) c->header = 0;
        else return ag_err("--header: expected yes or no, got '%s'", h);
        if (c->header && (c->fmt == AG_FMT_JSONL || c->fmt == AG_FMT_LINES))
            return ag_err("--header applies to csv and tsv, not %s", ag_format_name(c->fmt));
    } else {
        c->header = named && (c->fmt == AG_FMT_CSV || c->fmt == AG_FMT_TSV);
    }

    /* labels */
    if (ag_cli_given(cli, "label-map") && ag_label_map_parse(&c->label, ag_cli_str(cli, "label-map"))) return -1;
    if (ag_cli_given(cli, "score-scale") && ag_score_scale_parse(&c->label, ag_cli_str(cli, "score-scale"))) return -1;
    if (ag_cli_given(cli, "label-kind")) {
        if (ag_label_kind_parse(ag_cli_str(cli, "label-kind"), &c->label.kind)) return ag_err_ctx("--label-kind");
    } else {
        c->label.kind = !c->col_label ? AG_LABEL_NONE : c->label.nmap ? AG_LABEL_CLASS : AG_LABEL_SCORE;
    }
    if (c->col_label && c->label.kind == AG_LABEL_NONE) return ag_err("--label given with --label-kind none");
    if (!c->col_label && c->label.kind != AG_LABEL_NONE)
        return ag_err("--label-kind %s needs a --label column", ag_label_kind_name(c->label.kind));
    if (!c->col_label && (c->label.nmap || c->label.has_scale))
        return ag_err("--label-map / --score-scale need a --label column");
    if (c->label.has_scale && c->label.kind != AG_LABEL_SCORE) return ag_err("--score-scale applies to --label-kind score only");
    if (c->col_label && !c->col_b) return ag_err("--label needs pairs: give the second sentence with --b");
    static const char *const empties[] = {"error", "skip", "nan", NULL};
    if (ag_cli_choice(cli, "empty-label", empties, &c->empty_label)) return -1;
    if (ag_cli_given(cli, "source")) {
        if (ag_source_parse(ag_cli_str(cli, "source"), &c->source)) return ag_err_ctx("--source");
    } else {
        c->source = c->col_label ? AG_SOURCE_GOLD : AG_SOURCE_UNLABELED;
    }
    if (ag_cli_given(cli, "rows")) {
        c->rows_spec = ag_cli_str(cli, "rows");
        if (parse_rows(c, c->rows_spec)) return -1;
    }
    if (ag_cli_given(cli, "split")) {
        c->split_spec = ag_cli_str(cli, "split");
        if (!c->col_b) return ag_err("--split divides pairs: give the second sentence with --b");
        if (parse_split(c, c->split_spec)) return -1;
    }
    if (ag_cli_long(cli, "seed", &c->seed)) return -1;
    return 0;
}

static void cfg_free(prep_cfg *c) {
    free(c->inputs_buf);
    ag_label_spec_free(&c->label);
}

/* ---- reading -------------------------------------------------------------------------- */

/* A bad row: stop (return -1, message kept), or count it and go on (return 0). */
static int bad_row(const prep_cfg *c, prep_stats *st) {
    if (!c->skip_bad) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", ag_errmsg());
        return ag_err("%s (--skip-bad skips bad rows)", msg);
    }
    if (st->rows_bad < MAX_BAD_SHOWN) snprintf(st->bad_msg[st->rows_bad], sizeof st->bad_msg[0], "%s", ag_errmsg());
    st->rows_bad++;
    return 0;
}

static int only_space(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

static int read_input(const prep_cfg *c, ag_dataset *ds, prep_stats *st) {
    ag_reader_opts ro = {.format = c->fmt, .header = c->header};
    ag_reader *r = ag_reader_open(c->inputs, c->ninputs, &ro);
    if (!r) return -1;
    const char *path = ag_reader_path(r);
    int rc = -1, ia, ib = -1, il = -1;
    if ((ia = ag_reader_column(r, c->col_a)) < 0 || (c->col_b && (ib = ag_reader_column(r, c->col_b)) < 0) ||
        (c->col_label && (il = ag_reader_column(r, c->col_label)) < 0))
        goto out;
    for (;;) {
        ag_row row;
        int k = ag_reader_next(r, &row);
        if (k == AG_ROW_EOF) break;
        if (k == AG_ROW_FATAL) goto out;
        if (row.index < c->row_lo) continue;
        if (row.index >= c->row_hi) break;
        st->rows_read++;
        if (k == AG_ROW_BAD) {
            if (bad_row(c, st)) goto out;
            continue;
        }
        float label = NAN;
        if (il >= 0) {
            if (only_space(row.field[il], row.len[il])) {
                if (c->empty_label == EMPTY_SKIP) { st->rows_empty_label++; continue; }
                if (c->empty_label == EMPTY_ERROR) {
                    ag_err("%s:%lld: empty label in column %s (expected a %s, or --empty-label skip|nan)", path,
                           (long long)row.line, c->col_label, c->label.kind == AG_LABEL_CLASS ? "class" : "score");
                    if (bad_row(c, st)) goto out;
                    continue;
                }
            } else if (ag_label_parse(&c->label, row.field[il], row.len[il], &label)) {
                ag_err_ctx("%s:%lld: column %s", path, (long long)row.line, c->col_label);
                if (bad_row(c, st)) goto out;
                continue;
            }
        }
        int64_t a = ag_dataset_intern(ds, row.field[ia], row.len[ia]);
        if (a < 0) goto out;
        if (ib >= 0) {
            int64_t b = ag_dataset_intern(ds, row.field[ib], row.len[ib]);
            if (b < 0 || ag_dataset_add_pair(ds, (int32_t)a, (int32_t)b, label, row.line)) goto out;
        }
    }
    if (ds->n_sentences == 0) {
        if (st->rows_read == 0) ag_err("%s: no data rows%s%s", path, c->rows_spec ? " in --rows " : "", c->rows_spec ? c->rows_spec : "");
        else ag_err("%s: none of the %lld rows read could be used (%lld bad, %lld without a label)", path,
                    (long long)st->rows_read, (long long)st->rows_bad, (long long)st->rows_empty_label);
        goto out;
    }
    rc = 0;
out:
    ag_reader_close(r);
    return rc;
}

/* ---- tokenisation over the ranks -------------------------------------------------------- */

enum { TAG_COUNTS = 701, TAG_TOTAL, TAG_IDS };
#define ID_CHUNK (1 << 26)

/* Sentences [S*r/P, S*(r+1)/P) on rank r; rank 0 ends with all ids in sentence order. */
static int tokenise(ag_dataset *ds, const ag_tokenizer *tk, MPI_Comm comm, int rank, int size) {
    int64_t S = ds->n_sentences, lo = S * rank / size, hi = S * (rank + 1) / size, n = hi - lo;
    int32_t *cnt = malloc(sizeof *cnt * (size_t)(n ? n : 1));
    int32_t *ids = NULL, *scratch = NULL;
    int64_t nids = 0, capids = 0;
    int scap = 0, status = 0;
    if (!cnt) status = 1, ag_err("out of memory");
    for (int64_t i = lo; !status && i < hi; i++) {
        size_t len;
        const char *t = ag_dataset_text(ds, i, &len);
        int k = 0;
        if (ag_tok_wordpieces(tk, t, len, &scratch, &k, &scap)) {
            ag_err_ctx("tokenising sentence %lld", (long long)i);
            status = 1;
            break;
        }
        if (nids + k > capids) {
            int64_t nc = capids ? capids : 4096;
            while (nc < nids + k) nc *= 2;
            int32_t *p = realloc(ids, sizeof *p * (size_t)nc);
            if (!p) { ag_err("out of memory for %lld word pieces", (long long)nc); status = 1; break; }
            ids = p;
            capids = nc;
        }
        if (k) memcpy(ids + nids, scratch, sizeof *scratch * (size_t)k);
        nids += k;
        cnt[i - lo] = k;
    }
    free(scratch);
    int any = 0;
    MPI_Allreduce(&status, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any) {
        free(cnt);
        free(ids);
        if (status) { ag_err_ctx("rank %d", rank); return -1; }
        return ag_err("tokenisation failed on another rank (see its message)"), -2;
    }
    if (rank != 0) {
        MPI_Send(cnt, (int)n, MPI_INT32_T, 0, TAG_COUNTS, comm);
        MPI_Send(&nids, 1, MPI_INT64_T, 0, TAG_TOTAL, comm);
        for (int64_t o = 0; o < nids; o += ID_CHUNK) {
            int64_t m = nids - o < ID_CHUNK ? nids - o : ID_CHUNK;
            MPI_Send(ids + o, (int)m, MPI_INT32_T, 0, TAG_IDS, comm);
        }
        free(cnt);
        free(ids);
        return 0;
    }
    /* rank 0: its own block, then every other rank's in rank order */
    int64_t *off = malloc(sizeof *off * (size_t)(S + 1));
    int32_t *all_cnt = malloc(sizeof *all_cnt * (size_t)(S ? S : 1));
    int ok = off && all_cnt;
    if (ok && n) memcpy(all_cnt, cnt, sizeof *cnt * (size_t)n);
    free(cnt);
    for (int r = 1; r < size; r++) {
        int64_t rlo = S * r / size, rhi = S * (r + 1) / size, rn;
        /* receive even after a local failure, so the senders are not left hanging */
        int32_t *dst = ok ? all_cnt + rlo : NULL, *tmpc = NULL;
        if (!ok) tmpc = malloc(sizeof *tmpc * (size_t)(rhi - rlo + 1));
        MPI_Recv(dst ? dst : tmpc, (int)(rhi - rlo), MPI_INT32_T, r, TAG_COUNTS, comm, MPI_STATUS_IGNORE);
        free(tmpc);
        MPI_Recv(&rn, 1, MPI_INT64_T, r, TAG_TOTAL, comm, MPI_STATUS_IGNORE);
        if (ok && nids + rn > capids) {
            int64_t nc = capids ? capids : 4096;
            while (nc < nids + rn) nc *= 2;
            int32_t *p = realloc(ids, sizeof *p * (size_t)nc);
            if (p) { ids = p; capids = nc; }
            else ok = 0;
        }
        for (int64_t o = 0; o < rn; o += ID_CHUNK) {
            int64_t m = rn - o < ID_CHUNK ? rn - o : ID_CHUNK;
            if (ok) MPI_Recv(ids + nids + o, (int)m, MPI_INT32_T, r, TAG_IDS, comm, MPI_STATUS_IGNORE);
            else {
                int32_t *sink = malloc(sizeof *sink * (size_t)m);
                MPI_Recv(sink, (int)m, MPI_INT32_T, r, TAG_IDS, comm, MPI_STATUS_IGNORE);
                free(sink);
            }
        }
        if (ok) nids += rn;
    }
    if (!ok) {
        free(off);
        free(all_cnt);
        free(ids);
        return ag_err("out of memory gathering the word pieces");
    }
    off[0] = 0;
    for (int64_t i = 0; i < S; i++) off[i + 1] = off[i] + all_cnt[i];
    free(all_cnt);
    if (off[S] != nids) {
        ag_err("internal: gathered %lld word pieces, counts say %lld", (long long)nids, (long long)off[S]);
        free(off);
        free(ids);
        return -1;
    }
    if (!ids) ids = malloc(sizeof *ids);
    ag_dataset_set_tokens(ds, off, ids);
    return 0;
}

/* ---- output --------------------------------------------------------------------------- */

/* out.h5 + "train" -> out.train.h5 ({split} in out is replaced instead, if present). */
static void split_path(const char *out, const char *name, char *buf, size_t cap) {
    const char *ph = strstr(out, "{split}");
    if (ph) {
        snprintf(buf, cap, "%.*s%s%s", (int)(ph - out), out, name, ph + 7);
        return;
    }
    const char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
    if (dot && (!slash || dot > slash)) snprintf(buf, cap, "%.*s.%s%s", (int)(dot - out), out, name, dot);
    else snprintf(buf, cap, "%s.%s", out, name);
}

static int set_provenance(ag_dataset *ds, const prep_cfg *c, const prep_stats *st, const ag_tokenizer *tk,
                          char (*sha)[65]) {
    char cols[512], sc[64] = "";
    snprintf(cols, sizeof cols, "a=%s%s%s%s%s", c->col_a, c->col_b ? ",b=" : "", c->col_b ? c->col_b : "",
             c->col_label ? ",label=" : "", c->col_label ? c->col_label : "");
    if (c->label.has_scale) snprintf(sc, sizeof sc, "%g:%g", c->label.scale_lo, c->label.scale_hi);
    const char *shas[64];
    for (int k = 0; k < c->ninputs; k++) shas[k] = sha[k];
    static const char *const empties[] = {"error", "skip", "nan"};
    if (ag_dataset_attr_str(ds, "created_by", "argent prepare") ||
        ag_dataset_attr_str(ds, "input_format", ag_format_name(c->fmt)) ||
        ag_dataset_attr_strs(ds, "input_files", c->inputs, c->ninputs) ||
        ag_dataset_attr_strs(ds, "input_sha256", shas, c->ninputs) || ag_dataset_attr_int(ds, "input_header", c->header) ||
        ag_dataset_attr_str(ds, "columns", cols) || ag_dataset_attr_str(ds, "rows", c->rows_spec ? c->rows_spec : "") ||
        ag_dataset_attr_int(ds, "rows_read", st->rows_read) || ag_dataset_attr_int(ds, "rows_skipped_bad", st->rows_bad) ||
        ag_dataset_attr_int(ds, "rows_without_label", st->rows_empty_label) ||
        ag_dataset_attr_str(ds, "empty_label", empties[c->empty_label]) ||
        ag_dataset_attr_str(ds, "score_scale", sc) ||
        ag_dataset_attr_str(ds, "tokenizer", "bert-wordpiece (BertTokenizer: clean, CJK split, NFD accent strip, punctuation split)") ||
        ag_dataset_attr_int(ds, "do_lower_case", c->lower) ||
        ag_dataset_attr_int(ds, "vocab_size", ag_tokenizer_vocab_size(tk)))
        return -1;
    return 0;
}

typedef struct {
    uint64_t key;
    int64_t i;
} keyed_pair;

static int cmp_key(const void *x, const void *y) {
    const keyed_pair *a = x, *b = y;
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

static int cmp_i64(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

/* Rank 0: the whole dataset, or one subset per split. */
static int write_outputs(ag_dataset *ds, const prep_cfg *c, const prep_stats *st, const ag_tokenizer *tk,
                         int64_t *split_counts) {
    char sha[64][65];
    for (int k = 0; k < c->ninputs; k++)
        if (ag_file_sha256(c->inputs[k], sha[k])) return -1;
    snprintf(ds->vocab_sha256, sizeof ds->vocab_sha256, "%s", ag_tokenizer_vocab_hash(tk));
    ds->label_kind = c->label.kind;
    ds->source = c->source;
    if (c->label.nmap) {
        char m[4096];
        ag_label_map_format(&c->label, m, sizeof m);
        if (!(ds->label_map = strdup(m))) return ag_err("out of memory");
    }
    ds->num_classes = 0;
    if (c->label.kind == AG_LABEL_CLASS) {
        /* from the map when there is one, so every split agrees on the class count */
        float mx = -1;
        for (int i = 0; i < c->label.nmap; i++) mx = fmaxf(mx, c->label.map_value[i]);
        for (int64_t p = 0; p < ds->n_pairs; p++)
            if (!isnan(ds->label[p])) mx = fmaxf(mx, ds->label[p]);
        ds->num_classes = (int)mx + 1;
    }
    if (set_provenance(ds, c, st, tk, sha)) return -1;
    if (!c->nsplit) return ag_dataset_write(ds, c->out);

    /* Random order of the pairs: a Philox key per source line, so the side a pair falls on
     * depends only on the seed and its line; sizes are exact, round(cumulative share * P). */
    int64_t P = ds->n_pairs;
    keyed_pair *order = malloc(sizeof *order * (size_t)(P ? P : 1));
    int64_t *pick = malloc(sizeof *pick * (size_t)(P ? P : 1));
    if (!order || !pick) { free(order); free(pick); return ag_err("out of memory"); }
    for (int64_t p = 0; p < P; p++) {
        uint64_t line = (uint64_t)ds->line[p];
        order[p].key = (uint64_t)ag_rng_u32((uint64_t)c->seed, PREPARE_RNG_SPLIT, line, 0, 0) << 32 |
                       ag_rng_u32((uint64_t)c->seed, PREPARE_RNG_SPLIT, line, 0, 1);
        order[p].i = p;
    }
    qsort(order, (size_t)P, sizeof *order, cmp_key);
    int rc = 0;
    double cum = 0;
    int64_t start = 0;
    for (int s = 0; s < c->nsplit && !rc; s++) {
        cum += c->split_frac[s];
        int64_t end = (int64_t)llround(fmin(cum, 1.0) * (double)P);
        if (end > P) end = P;
        int64_t n = end - start;
        for (int64_t k = 0; k < n; k++) pick[k] = order[start + k].i;
        qsort(pick, (size_t)n, sizeof *pick, cmp_i64);   /* file order within a split */
        split_counts[s] = n;
        ag_dataset sub;
        if (ag_dataset_subset(ds, pick, n, &sub)) { rc = -1; break; }
        char path[4096];
        split_path(c->out, c->split_name[s], path, sizeof path);
        rc = (ag_dataset_attr_str(&sub, "split", c->split_name[s]) || ag_dataset_attr_str(&sub, "split_spec", c->split_spec) ||
              ag_dataset_attr_int(&sub, "split_seed", c->seed) || ag_dataset_write(&sub, path)) ? -1 : 0;
        ag_dataset_free(&sub);
        start = end;
    }
    free(order);
    free(pick);
    return rc;
}

/* ---- the command ----------------------------------------------------------------------- */

int ag_prepare_main(int argc, char **argv, MPI_Comm comm) {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (rank != 0)   /* the help is printed once, by rank 0 */
        for (int i = 1; i < argc; i++)
            if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return AG_EXIT_OK;
    ag_cli cli;
    int k = ag_cli_parse(&cli, "argent prepare",
                         "Read a text data set (CSV, TSV, JSON Lines or line-aligned files), tokenise its unique\n"
                         "sentences and write an HDF5 dataset of sentences and labelled pairs (docs/formats.md).",
                         prepare_opts, argc, argv);
    if (k) {
        if (k < 0 && rank == 0) fprintf(stderr, "%s\n", ag_errmsg());   /* names the program already */
        return k > 0 ? AG_EXIT_OK : AG_EXIT_USAGE;
    }
    prep_cfg c;
    if (configure(&c, &cli)) {
        if (rank == 0) fprintf(stderr, "argent prepare: %s\n", ag_errmsg());
        cfg_free(&c);
        ag_cli_free(&cli);
        return AG_EXIT_USAGE;
    }
    prep_stats st;
    memset(&st, 0, sizeof st);
    ag_dataset ds;
    ag_dataset_init(&ds);
    int64_t split_counts[MAX_SPLITS] = {0};
    int rc = AG_EXIT_FAIL;
    /* every rank parses the same bytes and so meets the same errors: rank 0 alone reports */
    ag_tokenizer *tk = ag_tokenizer_load(c.vocab, c.lower);
    if (!tk) {
        ag_err_ctx("--vocab");
        if (rank == 0) fprintf(stderr, "argent prepare: %s\n", ag_errmsg());
        goto out;
    }
    if (read_input(&c, &ds, &st)) {
        if (rank == 0) fprintf(stderr, "argent prepare: %s\n", ag_errmsg());
        goto out;
    }
    int t = tokenise(&ds, tk, comm, rank, size);
    if (t) {
        if (t == -1) fprintf(stderr, "argent prepare: %s\n", ag_errmsg());
        goto out;
    }
    int wrc = 0;
    if (rank == 0) {
        wrc = write_outputs(&ds, &c, &st, tk, split_counts);
        if (wrc) fprintf(stderr, "argent prepare: %s\n", ag_errmsg());
    }
    MPI_Bcast(&wrc, 1, MPI_INT, 0, comm);
    if (wrc) goto out;
    rc = AG_EXIT_OK;
    if (rank == 0) {
        if (st.rows_bad) {
            fprintf(stderr, "argent prepare: skipped %lld bad row%s of %lld:\n", (long long)st.rows_bad,
                    st.rows_bad == 1 ? "" : "s", (long long)st.rows_read);
            for (int i = 0; i < MAX_BAD_SHOWN && i < st.rows_bad; i++) fprintf(stderr, "  %s\n", st.bad_msg[i]);
            if (st.rows_bad > MAX_BAD_SHOWN) fprintf(stderr, "  ... and %lld more\n", (long long)(st.rows_bad - MAX_BAD_SHOWN));
        }
        if (!c.quiet) {
            printf("argent prepare: %s: %lld rows read, %lld bad skipped, %lld without label skipped -> %lld pairs, "
                   "%lld unique sentences, %lld word pieces (%d rank%s)\n",
                   c.inputs[0], (long long)st.rows_read, (long long)st.rows_bad, (long long)st.rows_empty_label,
                   (long long)ds.n_pairs, (long long)ds.n_sentences, (long long)ds.tok_off[ds.n_sentences], size,
                   size == 1 ? "" : "s");
            if (!c.nsplit) printf("argent prepare: wrote %s\n", c.out);
            for (int s = 0; s < c.nsplit; s++) {
                char path[4096];
                split_path(c.out, c.split_name[s], path, sizeof path);
                printf("argent prepare: wrote %s (split %s: %lld pairs)\n", path, c.split_name[s], (long long)split_counts[s]);
            }
            fflush(stdout);
        }
    }
out:
    ag_tokenizer_free(tk);
    ag_dataset_free(&ds);
    cfg_free(&c);
    ag_cli_free(&cli);
    return rc;
}

int ag_cmd_prepare(int argc, char **argv) {
    if (ag_comm_init(&argc, &argv)) {
        fprintf(stderr, "argent prepare: %s\n", ag_errmsg());
        return AG_EXIT_FAIL;
    }
    int rc = ag_prepare_main(argc, argv, ag_comm_get()->world);
    ag_comm_finalize();
    return rc;
}
