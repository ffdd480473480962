/* Text readers (CSV, TSV, JSON Lines, line-aligned files), label parsing and sha256; see
 * readers.h. Files are read byte by byte through stdio with a bounded record buffer, so
 * binary garbage or a runaway quote ends in an error instead of eating all memory. */
#include "io/readers.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nn/error.h"

/* A record longer than this is not text we can use; it is reported and reading stops. */
#define AG_MAX_RECORD ((size_t)64 << 20)

struct ag_reader {
    ag_format fmt;
    int header;
    int nfiles;
    FILE **f;
    char **path;
    int64_t line;        /* physical lines consumed so far */
    int64_t index;       /* next data row index */
    int ncols;           /* expected fields per row, -1 while unknown */
    int started;         /* a data row has been handed out: no more column registration */
    /* CSV/TSV header */
    int nhdr;
    char **hdr;
    /* record bytes; field k is buf[foff[k] .. foff[k]+flen[k]), NUL-terminated */
    char *buf;
    size_t blen, bcap;
    size_t *foff, *flen;
    int nf, fcap;
    char **fptr;         /* handed out in ag_row */
    /* the first CSV/TSV data row, read at open to learn the field count */
    int pending, pending_rc;
    int64_t pending_line;
    char pending_msg[1024];
    /* JSONL keys */
    int nkeys;
    char **keys;
    int eof;
};

/* ---- formats ------------------------------------------------------------------------ */

int ag_format_parse(const char *name, ag_format *out) {
    static const struct { const char *n; ag_format f; } t[] = {
        {"csv", AG_FMT_CSV}, {"tsv", AG_FMT_TSV}, {"jsonl", AG_FMT_JSONL}, {"lines", AG_FMT_LINES}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (name && !strcmp(name, t[i].n)) { *out = t[i].f; return 0; }
    return ag_err("unknown format '%s' (expected csv, tsv, jsonl or lines)", name ? name : "");
}

const char *ag_format_name(ag_format f) {
    switch (f) {
    case AG_FMT_CSV: return "csv";
    case AG_FMT_TSV: return "tsv";
    case AG_FMT_JSONL: return "jsonl";
    case AG_FMT_LINES: return "lines";
    default: return "none";
    }
}

int ag_format_guess(const char *path, ag_format *out) {
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash)) {
        if (!strcasecmp(dot, ".csv")) { *out = AG_FMT_CSV; return 0; }
        if (!strcasecmp(dot, ".tsv")) { *out = AG_FMT_TSV; return 0; }
        if (!strcasecmp(dot, ".jsonl") || !strcasecmp(dot, ".json") || !strcasecmp(dot, ".ndjson")) {
            *out = AG_FMT_JSONL;
            return 0;
        }
    }
    return ag_err("%s: cannot tell the format from the file name (expected .csv, .tsv or .jsonl; "
                  "give --format csv|tsv|jsonl|lines)", path);
}

/* ---- UTF-8 -------------------------------------------------------------------------- */

int ag_utf8_valid(const char *s, size_t len, size_t *bad) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) { i++; continue; }
        int n;
        unsigned cp, min;
        if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07; min = 0x10000; }
        else goto fail;
        if (i + (size_t)n >= len) goto fail;   /* the sequence runs past the end */
        for (int k = 1; k <= n; k++) {
            if ((p[i + k] & 0xC0) != 0x80) goto fail;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto fail;
        i += (size_t)n + 1;
    }
    return 1;
fail:
    if (bad) *bad = i;
    return 0;
}

/* ---- record buffer ------------------------------------------------------------------- */

static int buf_put(ag_reader *r, char c) {
    if (r->blen + 1 >= r->bcap) {
        if (r->bcap >= AG_MAX_RECORD) return -1;
        size_t nc = r->bcap ? r->bcap * 2 : 4096;
        char *nb = realloc(r->buf, nc);
        if (!nb) return -1;
        r->buf = nb;
        r->bcap = nc;
    }
    r->buf[r->blen++] = c;
    return 0;
}

static int field_begin(ag_reader *r) {
    if (r->nf == r->fcap) {
        int nc = r->fcap ? r->fcap * 2 : 16;
        size_t *a = realloc(r->foff, sizeof *a * (size_t)nc);
        if (!a) return -1;
        r->foff = a;
        size_t *b = realloc(r->flen, sizeof *b * (size_t)nc);
        if (!b) return -1;
        r->flen = b;
        char **c = realloc(r->fptr, sizeof *c * (size_t)nc);
        if (!c) return -1;
        r->fptr = c;
        r->fcap = nc;
    }
    r->foff[r->nf] = r->blen;
    r->flen[r->nf] = 0;
    r->nf++;
    return 0;
}

static int field_end(ag_reader *r) {
    r->flen[r->nf - 1] = r->blen - r->foff[r->nf - 1];
    return buf_put(r, 0);
}

static void record_reset(ag_reader *r) { r->blen = 0; r->nf = 0; }

static int too_long(ag_reader *r, int64_t line) {
    ag_err("%s:%lld: record longer than %zu MiB (a binary file, or an unterminated quote?)",
           r->path[0], (long long)line, AG_MAX_RECORD >> 20);
    return AG_ROW_FATAL;
}

/* One physical line of file k into the buffer (without \n and a trailing \r), as one
 * field. 1 line, 0 end of file, AG_ROW_FATAL on a read error or an overlong line. */
static int read_line(ag_reader *r, int k) {
    FILE *f = r->f[k];
    int c, any = 0;
    if (field_begin(r)) return ag_err("out of memory"), AG_ROW_FATAL;
    while ((c = getc_unlocked(f)) != EOF) {
        any = 1;
        if (c == '\n') break;
        if (buf_put(r, (char)c)) return too_long(r, r->line + 1);
    }
    if (ferror(f)) {
        ag_err("%s: read error after line %lld: %s", r->path[k], (long long)r->line, strerror(errno));
        return AG_ROW_FATAL;
    }
    if (!any) { r->nf--; return 0; }
    size_t start = r->foff[r->nf - 1];
    if (r->blen > start && r->buf[r->blen - 1] == '\r') r->blen--;
    if (field_end(r)) return too_long(r, r->line + 1);
    return 1;
}

/* Checks every field of the record: valid UTF-8 and no NUL byte. */
static int check_fields(ag_reader *r, int64_t line) {
    for (int k = 0; k < r->nf; k++) {
        const char *s = r->buf + r->foff[k];
        size_t n = r->flen[k], bad;
        const char *who = r->fmt == AG_FMT_LINES ? r->path[k] : r->path[0];
        if (memchr(s, 0, n)) {
            ag_err("%s:%lld: field %d contains a NUL byte (expected text; is this a binary file?)",
                   who, (long long)line, k);
            return AG_ROW_BAD;
        }
        if (!ag_utf8_valid(s, n, &bad)) {
            ag_err("%s:%lld: field %d: invalid UTF-8 at byte %zu of the field (expected UTF-8 text)",
                   who, (long long)line, k, bad);
            return AG_ROW_BAD;
        }
    }
    return AG_ROW_OK;
}

/* ---- CSV (RFC 4180) ------------------------------------------------------------------- */

/* Reads one record. Returns AG_ROW_OK, AG_ROW_EOF, AG_ROW_BAD (message set, record
 * consumed), AG_ROW_FATAL. *blank is set for an empty line. */
static int csv_record(ag_reader *r, int64_t *start, int *blank) {
    FILE *f = r->f[0];
    enum { FSTART, UNQ, QUO, AFTERQ } st = FSTART;
    int c, bad = 0;
    char badmsg[256] = "";
    record_reset(r);
    *blank = 0;
    *start = r->line + 1;
    int64_t qline = 0;
    for (;;) {
        c = getc_unlocked(f);
        if (c == '\r') {
            /* CRLF ends a record (outside quotes); a lone CR is data */
            int d = getc_unlocked(f);
            if (d == '\n') c = '\n';
            else if (d != EOF) ungetc(d, f);
            if (c == '\n' && st == QUO) {
                /* keep the CR inside a quoted field as it was */
                if (buf_put(r, '\r')) return too_long(r, *start);
            }
        }
        if (ferror(f)) {
            ag_err("%s: read error after line %lld: %s", r->path[0], (long long)r->line, strerror(errno));
            return AG_ROW_FATAL;
        }
        switch (st) {
        case FSTART:
            if (c == EOF || c == '\n') {
                if (r->nf == 0) {
                    if (c == EOF) return AG_ROW_EOF;
                    r->line++;
                    *blank = 1;
                    return AG_ROW_OK;
                }
                if (field_begin(r) || field_end(r)) return too_long(r, *start);
                if (c == '\n') r->line++;
                goto done;
            }
            if (field_begin(r)) return too_long(r, *start);
            if (c == '"') { st = QUO; qline = r->line + 1; break; }
            if (c == ',') { if (field_end(r)) return too_long(r, *start); break; }
            if (buf_put(r, (char)c)) return too_long(r, *start);
            st = UNQ;
            break;
        case UNQ:
            if (c == ',' || c == '\n' || c == EOF) {
                if (field_end(r)) return too_long(r, *start);
                if (c == ',') { st = FSTART; break; }
                if (c == '\n') r->line++;
                goto done;
            }
            /* a quote inside an unquoted field is kept as text, as most writers expect */
            if (buf_put(r, (char)c)) return too_long(r, *start);
            break;
        case QUO:
            if (c == EOF) {
                if (field_end(r)) return too_long(r, *start);
                ag_err("%s:%lld: unterminated quoted field (the quote opened on line %lld runs to the "
                       "end of the file; expected a closing \")", r->path[0], (long long)*start,
                       (long long)qline);
                r->eof = 1;
                return AG_ROW_BAD;
            }
            if (c == '"') {
                int d = getc_unlocked(f);
                if (d == '"') { if (buf_put(r, '"')) return too_long(r, *start); break; }
                if (d != EOF) ungetc(d, f);
                st = AFTERQ;
                break;
            }
            if (c == '\n') r->line++;
            if (buf_put(r, (char)c)) return too_long(r, *start);
            break;
        case AFTERQ:
            if (c == ',' || c == '\n' || c == EOF) {
                if (field_end(r)) return too_long(r, *start);
                if (c == ',') { st = FSTART; break; }
                if (c == '\n') r->line++;
                goto done;
            }
            if (!bad) {
                bad = 1;
                snprintf(badmsg, sizeof badmsg, "field %d: unexpected character '%c' after a closing quote "
                         "(expected , or the end of the line; a quote inside a quoted field is written \"\")",
                         r->nf - 1, isprint(c) ? c : '?');
            }
            /* read on to the end of the line, keeping the text, to resynchronise */
            if (buf_put(r, (char)c)) return too_long(r, *start);
            st = UNQ;
            break;
        }
    }
done:
    if (bad) {
        ag_err("%s:%lld: %s", r->path[0], (long long)*start, badmsg);
        return AG_ROW_BAD;
    }
    return AG_ROW_OK;
}

/* ---- TSV: split a physical line on tabs; quotes are ordinary characters ---------------- */

static int tsv_record(ag_reader *r, int64_t *start, int *blank) {
    record_reset(r);
    *blank = 0;
    *start = r->line + 1;
    int rc = read_line(r, 0);
    if (rc <= 0) return rc == 0 ? AG_ROW_EOF : rc;
    r->line++;
    size_t n = r->flen[0];
    if (n == 0) { *blank = 1; return AG_ROW_OK; }
    /* split in place: each tab becomes a NUL and starts a new field */
    r->nf = 0;
    size_t s = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || r->buf[i] == '\t') {
            if (field_begin(r)) return ag_err("out of memory"), AG_ROW_FATAL;
            r->foff[r->nf - 1] = s;
            r->flen[r->nf - 1] = i - s;
            r->buf[i] = 0;
            s = i + 1;
        }
    }
    return AG_ROW_OK;
}

/* ---- JSON Lines -------------------------------------------------------------------------- */

static int jsonl_record(ag_reader *r, int64_t *start, int *blank) {
    record_reset(r);
    *blank = 0;
    *start = r->line + 1;
    int rc = read_line(r, 0);
    if (rc <= 0) return rc == 0 ? AG_ROW_EOF : rc;
    r->line++;
    size_t n = r->flen[0];
    size_t i = 0;
    while (i < n && isspace((unsigned char)r->buf[i])) i++;
    if (i == n) { *blank = 1; return AG_ROW_OK; }
    json_error_t je;
    json_t *root = json_loadb(r->buf, n, 0, &je);
    if (!root) {
        ag_err("%s:%lld: invalid JSON at column %d: %s (expected one JSON object per line)",
               r->path[0], (long long)*start, je.column, je.text);
        return AG_ROW_BAD;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        ag_err("%s:%lld: expected a JSON object, found another JSON value", r->path[0], (long long)*start);
        return AG_ROW_BAD;
    }
    /* the values of the registered keys become the fields, copied after the raw line */
    r->blen = n + 1;
    r->nf = 0;
    int out = AG_ROW_OK;
    for (int k = 0; k < r->nkeys && out == AG_ROW_OK; k++) {
        json_t *v = json_object_get(root, r->keys[k]);
        char num[64];
        const char *s = NULL;
        size_t sl = 0;
        if (!v) {
            ag_err("%s:%lld: missing key \"%s\"", r->path[0], (long long)*start, r->keys[k]);
            out = AG_ROW_BAD;
            break;
        }
        if (json_is_string(v)) { s = json_string_value(v); sl = json_string_length(v); }
        else if (json_is_integer(v)) { snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v)); s = num; sl = strlen(num); }
        else if (json_is_real(v)) { snprintf(num, sizeof num, "%.17g", json_real_value(v)); s = num; sl = strlen(num); }
        else if (json_is_true(v)) { s = "true"; sl = 4; }
        else if (json_is_false(v)) { s = "false"; sl = 5; }
        else if (json_is_null(v)) { s = ""; sl = 0; }
        else {
            ag_err("%s:%lld: key \"%s\" holds an %s (expected a string or a number)", r->path[0],
                   (long long)*start, r->keys[k], json_is_array(v) ? "array" : "object");
            out = AG_ROW_BAD;
            break;
        }
        if (field_begin(r)) { out = AG_ROW_FATAL; ag_err("out of memory"); break; }
        for (size_t j = 0; j < sl; j++)
            if (buf_put(r, s[j])) { out = too_long(r, *start); break; }
        if (out == AG_ROW_OK && field_end(r)) out = too_long(r, *start);
    }
    json_decref(root);
    return out;
}

/* ---- line-aligned files --------------------------------------------------------------------- */

static int lines_record(ag_reader *r, int64_t *start, int *blank) {
    record_reset(r);
    *blank = 0;
    *start = r->line + 1;
    int got = -1, miss = -1;   /* a file that had a line, a file that had none */
    for (int k = 0; k < r->nfiles; k++) {
        int rc = read_line(r, k);
        if (rc < 0) return rc;
        if (rc == 1) { if (got < 0) got = k; }
        else if (miss < 0) miss = k;
    }
    if (got < 0) return AG_ROW_EOF;
    if (miss >= 0) {
        ag_err("%s has %lld lines but %s has more (line-aligned files must have the same number of lines)",
               r->path[miss], (long long)r->line, r->path[got]);
        return AG_ROW_FATAL;
    }
    r->line++;
    return AG_ROW_OK;
}

/* ---- the reader ------------------------------------------------------------------------------ */

static int raw_record(ag_reader *r, int64_t *start, int *blank) {
    switch (r->fmt) {
    case AG_FMT_CSV: return csv_record(r, start, blank);
    case AG_FMT_TSV: return tsv_record(r, start, blank);
    case AG_FMT_JSONL: return jsonl_record(r, start, blank);
    case AG_FMT_LINES: return lines_record(r, start, blank);
    default: return ag_err("reader: no format"), AG_ROW_FATAL;
    }
}

/* Next non-blank record, its field check included. */
static int next_record(ag_reader *r, int64_t *start) {
    for (;;) {
        if (r->eof) return AG_ROW_EOF;
        int blank = 0;
        int rc = raw_record(r, start, &blank);
        if (rc == AG_ROW_OK && blank) continue;
        if (rc == AG_ROW_EOF) r->eof = 1;
        if (rc == AG_ROW_FATAL) r->eof = 1;
        if (rc == AG_ROW_OK) rc = check_fields(r, *start);
        return rc;
    }
}

void ag_reader_close(ag_reader *r) {
    if (!r) return;
    for (int k = 0; k < r->nfiles; k++) {
        if (r->f && r->f[k]) fclose(r->f[k]);
        if (r->path) free(r->path[k]);
    }
    free(r->f);
    free(r->path);
    for (int k = 0; k < r->nhdr; k++) free(r->hdr[k]);
    free(r->hdr);
    for (int k = 0; k < r->nkeys; k++) free(r->keys[k]);
    free(r->keys);
    free(r->buf);
    free(r->foff);
    free(r->flen);
    free(r->fptr);
    free(r);
}

ag_reader *ag_reader_open(const char *const *paths, int npaths, const ag_reader_opts *opts) {
    if (!opts || opts->format == AG_FMT_NONE) return ag_err("reader: no format given"), NULL;
    if (npaths < 1 || (npaths != 1 && opts->format != AG_FMT_LINES)) {
        ag_err("reader: %s takes exactly one file, got %d", ag_format_name(opts->format), npaths);
        return NULL;
    }
    if (opts->header && (opts->format == AG_FMT_JSONL || opts->format == AG_FMT_LINES)) {
        ag_err("reader: a header row applies to csv and tsv only, not %s", ag_format_name(opts->format));
        return NULL;
    }
    ag_reader *r = calloc(1, sizeof *r);
    if (!r) return ag_err("out of memory"), NULL;
    r->fmt = opts->format;
    r->header = opts->header;
    r->ncols = -1;
    r->f = calloc((size_t)npaths, sizeof *r->f);
    r->path = calloc((size_t)npaths, sizeof *r->path);
    if (!r->f || !r->path) { free(r->f); free(r->path); free(r); return ag_err("out of memory"), NULL; }
    r->nfiles = npaths;
    for (int k = 0; k < npaths; k++) {
        r->path[k] = strdup(paths[k]);
        if (!r->path[k]) { ag_err("out of memory"); goto fail; }
        r->f[k] = fopen(paths[k], "rb");
        if (!r->f[k]) { ag_err("%s: cannot open: %s", paths[k], strerror(errno)); goto fail; }
        unsigned char bom[3];
        size_t got = fread(bom, 1, 3, r->f[k]);
        if (!(got == 3 && bom[0] == 0xEF && bom[1] == 0xBB && bom[2] == 0xBF)) {
            if (fseek(r->f[k], 0, SEEK_SET)) {
                ag_err("%s: cannot seek (a regular file is expected): %s", paths[k], strerror(errno));
                goto fail;
            }
        }
        int c = getc_unlocked(r->f[k]);
        if (c == EOF) { ag_err("%s: the file is empty (expected %s text)", paths[k], ag_format_name(r->fmt)); goto fail; }
        ungetc(c, r->f[k]);
    }
    if (r->fmt == AG_FMT_LINES) r->ncols = npaths;
    if (r->fmt == AG_FMT_JSONL) r->ncols = 0;
    if (r->fmt == AG_FMT_CSV || r->fmt == AG_FMT_TSV) {
        int64_t start;
        int rc = next_record(r, &start);
        if (r->header) {
            if (rc == AG_ROW_EOF) { ag_err("%s: no header row (the file has only blank lines)", r->path[0]); goto fail; }
            if (rc != AG_ROW_OK) { ag_err_ctx("%s: unreadable header row", r->path[0]); goto fail; }
            r->hdr = calloc((size_t)r->nf, sizeof *r->hdr);
            if (!r->hdr) { ag_err("out of memory"); goto fail; }
            r->nhdr = r->nf;
            for (int k = 0; k < r->nf; k++) {
                r->hdr[k] = strdup(r->buf + r->foff[k]);
                if (!r->hdr[k]) { ag_err("out of memory"); goto fail; }
            }
            r->ncols = r->nf;
        } else {
            if (rc == AG_ROW_EOF) { ag_err("%s: no rows (the file has only blank lines)", r->path[0]); goto fail; }
            if (rc == AG_ROW_FATAL) goto fail;
            /* keep the first row for the caller; its field count sets what is expected */
            r->pending = 1;
            r->pending_rc = rc;
            r->pending_line = start;
            if (rc == AG_ROW_BAD) snprintf(r->pending_msg, sizeof r->pending_msg, "%s", ag_errmsg());
            r->ncols = r->nf;
        }
    }
    return r;
fail:
    ag_reader_close(r);
    return NULL;
}

const char *ag_reader_path(const ag_reader *r) { return r->path[0]; }
int ag_reader_ncols(const ag_reader *r) { return r->ncols; }
const char *ag_reader_header(const ag_reader *r, int i) {
    return (r->hdr && i >= 0 && i < r->nhdr) ? r->hdr[i] : NULL;
}

/* A whole non-negative decimal number: its value, else -1. */
static long spec_number(const char *s) {
    if (!*s) return -1;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > 1000000) return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

static void list_columns(const ag_reader *r, char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = 0;
    for (int k = 0; k < r->nhdr && o + 1 < cap; k++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%s", k ? ", " : "", r->hdr[k]);
}

int ag_reader_column(ag_reader *r, const char *spec) {
    if (!spec || !*spec) return ag_err("%s: empty column name", r->path[0]);
    long num = spec_number(spec);
    if (r->fmt == AG_FMT_JSONL) {
        if (r->started) return ag_err("%s: column \"%s\" registered after reading began", r->path[0], spec);
        for (int k = 0; k < r->nkeys; k++)
            if (!strcmp(r->keys[k], spec)) return k;
        char **nk = realloc(r->keys, sizeof *nk * (size_t)(r->nkeys + 1));
        if (!nk) return ag_err("out of memory");
        r->keys = nk;
        if (!(r->keys[r->nkeys] = strdup(spec))) return ag_err("out of memory");
        r->ncols = ++r->nkeys;
        return r->nkeys - 1;
    }
    if (r->fmt == AG_FMT_LINES) {
        if (num >= 0) {
            if (num >= r->nfiles)
                return ag_err("column %ld out of range: %d line-aligned files were given (0-%d)", num,
                              r->nfiles, r->nfiles - 1);
            return (int)num;
        }
        for (int k = 0; k < r->nfiles; k++) {
            const char *dot = strrchr(r->path[k], '.');
            const char *base = strrchr(r->path[k], '/');
            base = base ? base + 1 : r->path[k];
            if ((dot && !strcmp(dot + 1, spec)) || !strcmp(base, spec)) return k;
        }
        return ag_err("column '%s': no line-aligned file has the extension .%s (give a file number 0-%d)",
                      spec, spec, r->nfiles - 1);
    }
    /* CSV/TSV */
    if (r->hdr) {
        for (int k = 0; k < r->nhdr; k++)
            if (!strcmp(r->hdr[k], spec)) return k;
    }
    if (num >= 0) {
        if (num >= r->ncols)
            return ag_err("column %ld out of range: %s has %d columns (0-%d)", num, r->path[0], r->ncols,
                          r->ncols - 1);
        return (int)num;
    }
    if (!r->hdr)
        return ag_err("column '%s' given by name but %s is read without a header (give a column number "
                      "0-%d, or read the first row as a header)", spec, r->path[0], r->ncols - 1);
    char cols[512];
    list_columns(r, cols, sizeof cols);
    return ag_err("column '%s' is not in the header of %s (columns: %s)", spec, r->path[0], cols);
}

int ag_reader_next(ag_reader *r, ag_row *row) {
    int64_t start;
    int rc;
    r->started = 1;
    if (r->pending) {
        r->pending = 0;
        rc = r->pending_rc;
        start = r->pending_line;
        if (rc == AG_ROW_BAD) ag_err("%s", r->pending_msg);
    } else {
        rc = next_record(r, &start);
    }
    memset(row, 0, sizeof *row);
    if (rc == AG_ROW_EOF || rc == AG_ROW_FATAL) return rc;
    row->line = start;
    row->index = r->index++;
    if (rc == AG_ROW_OK && r->ncols >= 0 && r->nf != r->ncols) {
        ag_err("%s:%lld: expected %d fields (as in the %s), found %d", r->path[0], (long long)start, r->ncols,
               r->header ? "header" : "first row", r->nf);
        rc = AG_ROW_BAD;
    }
    for (int k = 0; k < r->nf; k++) r->fptr[k] = r->buf + r->foff[k];
    row->n = r->nf;
    row->field = r->fptr;
    row->len = r->flen;
    return rc;
}

/* ---- labels ------------------------------------------------------------------------------------ */

const char *ag_label_kind_name(ag_label_kind k) {
    return k == AG_LABEL_SCORE ? "score" : k == AG_LABEL_CLASS ? "class" : "none";
}

int ag_label_kind_parse(const char *name, ag_label_kind *out) {
    if (name && !strcmp(name, "score")) { *out = AG_LABEL_SCORE; return 0; }
    if (name && !strcmp(name, "class")) { *out = AG_LABEL_CLASS; return 0; }
    if (name && !strcmp(name, "none")) { *out = AG_LABEL_NONE; return 0; }
    return ag_err("unknown label kind '%s' (expected score, class or none)", name ? name : "");
}

void ag_label_spec_init(ag_label_spec *s) { memset(s, 0, sizeof *s); }

void ag_label_spec_free(ag_label_spec *s) {
    for (int i = 0; i < s->nmap; i++) free(s->map_name[i]);
    free(s->map_name);
    free(s->map_value);
    memset(s, 0, sizeof *s);
}

/* Strict number: the whole (whitespace-trimmed) text, finite. */
static int parse_number(const char *text, size_t len, double *out) {
    char tmp[128];
    while (len && isspace((unsigned char)*text)) { text++; len--; }
    while (len && isspace((unsigned char)text[len - 1])) len--;
    if (len == 0 || len >= sizeof tmp) return -1;
    memcpy(tmp, text, len);
    tmp[len] = 0;
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (*end || errno == ERANGE || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int ag_label_map_parse(ag_label_spec *s, const char *spec) {
    if (!spec || !*spec) return ag_err("--label-map: empty (expected name=value,name=value,...)");
    const char *p = spec;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (!eq || eq == p)
            return ag_err("--label-map: '%.*s' is not name=value (expected e.g. entailment=1,neutral=0)", (int)n, p);
        size_t nl = (size_t)(eq - p);
        double v;
        if (parse_number(eq + 1, n - nl - 1, &v))
            return ag_err("--label-map: value '%.*s' of '%.*s' is not a number", (int)(n - nl - 1), eq + 1, (int)nl, p);
        for (int i = 0; i < s->nmap; i++)
            if (strlen(s->map_name[i]) == nl && !memcmp(s->map_name[i], p, nl))
                return ag_err("--label-map: '%.*s' given twice", (int)nl, p);
        char **nn = realloc(s->map_name, sizeof *nn * (size_t)(s->nmap + 1));
        if (!nn) return ag_err("out of memory");
        s->map_name = nn;
        float *nv = realloc(s->map_value, sizeof *nv * (size_t)(s->nmap + 1));
        if (!nv) return ag_err("out of memory");
        s->map_value = nv;
        if (!(s->map_name[s->nmap] = strndup(p, nl))) return ag_err("out of memory");
        s->map_value[s->nmap++] = (float)v;
        p += n;
        if (*p == ',') {
            p++;
            if (!*p) return ag_err("--label-map: trailing comma in '%s'", spec);
        }
    }
    return 0;
}

int ag_score_scale_parse(ag_label_spec *s, const char *spec) {
    const char *colon = spec ? strchr(spec, ':') : NULL;
    double lo, hi;
    if (!colon || parse_number(spec, (size_t)(colon - spec), &lo) || parse_number(colon + 1, strlen(colon + 1), &hi))
        return ag_err("--score-scale: '%s' is not LO:HI (expected e.g. 0:5)", spec ? spec : "");
    if (!(hi > lo)) return ag_err("--score-scale: '%s': HI must be greater than LO", spec);
    s->has_scale = 1;
    s->scale_lo = lo;
    s->scale_hi = hi;
    return 0;
}

void ag_label_map_format(const ag_label_spec *s, char *buf, size_t cap) {
    size_t o = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; i < s->nmap && o + 1 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%s=%.9g", i ? "," : "", s->map_name[i], (double)s->map_value[i]);
}

int ag_label_parse(const ag_label_spec *s, const char *text, size_t len, float *out) {
    const char *t = text;
    size_t n = len;
    while (n && isspace((unsigned char)*t)) { t++; n--; }
    while (n && isspace((unsigned char)t[n - 1])) n--;
    double v;
    if (s->nmap > 0) {
        int found = -1;
        for (int i = 0; i < s->nmap; i++)
            if (strlen(s->map_name[i]) == n && !memcmp(s->map_name[i], t, n)) { found = i; break; }
        if (found < 0) {
            char names[512];
            size_t o = 0;
            names[0] = 0;
            for (int i = 0; i < s->nmap && o + 1 < sizeof names; i++)
                o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", i ? ", " : "", s->map_name[i]);
            return ag_err("unmapped label '%.*s' (expected one of: %s)", (int)(n > 80 ? 80 : n), t, names);
        }
        v = s->map_value[found];
    } else {
        if (n == 0) return ag_err("empty label (expected a %s)", s->kind == AG_LABEL_CLASS ? "class id" : "number");
        if (parse_number(t, n, &v))
            return ag_err("unparsable %s '%.*s' (expected a number)", s->kind == AG_LABEL_CLASS ? "class id" : "score",
                          (int)(n > 80 ? 80 : n), t);
    }
    if (s->kind == AG_LABEL_CLASS) {
        if (!(v >= 0 && v < 16777216.0 && v == floor(v)))
            return ag_err("class label %.9g from '%.*s' is not a whole number >= 0", v, (int)(n > 80 ? 80 : n), t);
    } else if (s->has_scale) {
        if (!(v >= s->scale_lo && v <= s->scale_hi))
            return ag_err("score %.9g outside --score-scale %g:%g", v, s->scale_lo, s->scale_hi);
        v = (v - s->scale_lo) / (s->scale_hi - s->scale_lo);
    }
    *out = (float)v;
    return 0;
}

/* ---- sha256 (FIPS 180-4) ------------------------------------------------------------------------ */

typedef struct {
    uint32_t h[8];
    uint64_t nbytes;
    unsigned char blk[64];
    size_t nblk;
} sha256_ctx;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(sha256_ctx *c, const unsigned char *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
        h = g; g = f; f = e; e = d + t1; d = cc; cc = b; b = a; a = t1 + t2;
    }
    c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d;
    c->h[4] += e; c->h[5] += f; c->h[6] += g; c->h[7] += h;
}

static void sha256_init(sha256_ctx *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->nbytes = 0;
    c->nblk = 0;
}

static void sha256_update(sha256_ctx *c, const void *data, size_t len) {
    const unsigned char *p = data;
    c->nbytes += len;
    while (len) {
        size_t k = 64 - c->nblk;
        if (k > len) k = len;
        memcpy(c->blk + c->nblk, p, k);
        c->nblk += k;
        p += k;
        len -= k;
        if (c->nblk == 64) { sha256_block(c, c->blk); c->nblk = 0; }
    }
}

static void sha256_final(sha256_ctx *c, char hex[65]) {
    uint64_t bits = c->nbytes * 8;
    unsigned char pad = 0x80, zero = 0, len[8];
    sha256_update(c, &pad, 1);
    while (c->nblk != 56) sha256_update(c, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_update(c, len, 8);
    for (int i = 0; i < 8; i++) snprintf(hex + 8 * i, 9, "%08x", c->h[i]);
    hex[64] = 0;
}

void ag_sha256_hex(const void *data, size_t len, char hex[65]) {
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, data, len);
    sha256_final(&c, hex);
}

int ag_file_sha256(const char *path, char hex[65]) {
    FILE *f = fopen(path, "rb");
    if (!f) return ag_err("%s: cannot open: %s", path, strerror(errno));
    sha256_ctx c;
    sha256_init(&c);
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) sha256_update(&c, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return ag_err("%s: read error while hashing", path);
    sha256_final(&c, hex);
    return 0;
}
