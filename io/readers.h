/* Text readers for the data sets argent trains on: CSV (RFC 4180), TSV (no quoting at all),
 * JSON Lines and line-aligned files (one item per line, several files side by side, as
 * SNLI's .s1/.s2/.labels). Every reader yields rows of fields with the 1-based line where
 * the row starts, so each error can name file:line. A bad row (wrong field count, invalid
 * UTF-8, NUL byte, bad quoting, bad JSON) is reported as AG_ROW_BAD and the reader moves on
 * to the next row, so the caller can choose to stop or to skip it. Labels (class names
 * mapped to ids, scores scaled to 0..1) are parsed here too, as are file checksums for
 * provenance. */
#ifndef ARGENT_IO_READERS_H
#define ARGENT_IO_READERS_H
#include <stddef.h>
#include <stdint.h>

typedef enum { AG_FMT_NONE = 0, AG_FMT_CSV, AG_FMT_TSV, AG_FMT_JSONL, AG_FMT_LINES } ag_format;

typedef struct {
    ag_format format;
    int header;   /* CSV/TSV: the first row names the columns (and is not data) */
} ag_reader_opts;

/* One row. Pointers stay valid until the next ag_reader_next or ag_reader_close. */
typedef struct {
    int n;               /* number of fields */
    char **field;        /* [n] NUL-terminated UTF-8 */
    size_t *len;         /* [n] bytes, without the NUL */
    int64_t line;        /* 1-based line where the row starts (same line in every file of AG_FMT_LINES) */
    int64_t index;       /* 0-based data row index: header and blank lines not counted, bad rows counted */
} ag_row;

enum { AG_ROW_FATAL = -2, AG_ROW_BAD = -1, AG_ROW_EOF = 0, AG_ROW_OK = 1 };

typedef struct ag_reader ag_reader;

/* "csv" | "tsv" | "jsonl" | "lines" -> format. -1 with ag_err on anything else. */
int ag_format_parse(const char *name, ag_format *out);
const char *ag_format_name(ag_format f);
/* From the extension: .csv, .tsv, .jsonl/.json/.ndjson; anything else -> -1 with ag_err. */
int ag_format_guess(const char *path, ag_format *out);

/* Open npaths files (exactly 1 except for AG_FMT_LINES, which takes 1 or more files read in
 * step). A leading UTF-8 BOM is skipped and CRLF line ends are accepted everywhere. Fails
 * (NULL, ag_err) when a file cannot be opened or is empty, or a CSV/TSV header is unreadable. */
ag_reader *ag_reader_open(const char *const *paths, int npaths, const ag_reader_opts *opts);
void ag_reader_close(ag_reader *r);

/* Column spec -> index into row.field. A spec is a 0-based number or a name:
 *   CSV/TSV: a header name (needs opts.header) or a field number;
 *   JSONL:   a key (registered: rows then carry the keys' values in registration order;
 *            numbers become their JSON text, true/false their names, null an empty field);
 *   lines:   the file number, or the file's extension without the dot ("s1", "labels").
 * -1 with ag_err naming the file and the columns it has. Call before the first row. */
int ag_reader_column(ag_reader *r, const char *spec);
/* Fields per row (CSV/TSV: from the header or the first row; lines: files; JSONL: keys). */
int ag_reader_ncols(const ag_reader *r);
/* Header names (CSV/TSV with header), NULL otherwise. */
const char *ag_reader_header(const ag_reader *r, int i);

/* Next row: AG_ROW_OK, AG_ROW_EOF, AG_ROW_BAD (ag_err says "file:line: what was expected";
 * row->line/index are set and reading can go on), or AG_ROW_FATAL (I/O error, or a row too
 * long to be text; reading cannot go on). */
int ag_reader_next(ag_reader *r, ag_row *row);
/* The file name for messages (the first file for AG_FMT_LINES). */
const char *ag_reader_path(const ag_reader *r);

/* 1 when s[0..len) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF);
 * otherwise 0 and *bad (if not NULL) gets the offset of the first bad byte. */
int ag_utf8_valid(const char *s, size_t len, size_t *bad);

/* ---- labels ---------------------------------------------------------------------- */

typedef enum { AG_LABEL_NONE = 0, AG_LABEL_SCORE = 1, AG_LABEL_CLASS = 2 } ag_label_kind;
const char *ag_label_kind_name(ag_label_kind k);   /* "none" | "score" | "class" */
int ag_label_kind_parse(const char *name, ag_label_kind *out);

typedef struct {
    ag_label_kind kind;
    int nmap;            /* label map "name=value,...": class names (or any text) -> value */
    char **map_name;     /* [nmap] */
    float *map_value;    /* [nmap] */
    int has_scale;       /* scores: (x - lo) / (hi - lo), x must lie in [lo, hi] */
    double scale_lo, scale_hi;
} ag_label_spec;

void ag_label_spec_init(ag_label_spec *s);
void ag_label_spec_free(ag_label_spec *s);
/* "entailment=1,neutral=0,contradiction=0". -1 with ag_err on empty names, duplicates,
 * non-numeric values. */
int ag_label_map_parse(ag_label_spec *s, const char *spec);
/* "0:5" -> lo 0, hi 5 (hi > lo required). */
int ag_score_scale_parse(ag_label_spec *s, const char *spec);
/* Field text -> label value. Class kind: the mapped value (or the number itself without a
 * map), which must be a whole number >= 0. Score kind: the mapped value or the number,
 * scaled. -1 with ag_err saying what was expected ("unmapped label 'x' (expected one of:
 * a, b)", "unparsable score 'x' (expected a number)", "score 7 outside --score-scale 0:5"). */
int ag_label_parse(const ag_label_spec *s, const char *text, size_t len, float *out);
/* Canonical text of the map ("a=1,b=0") into buf; "" when there is none. */
void ag_label_map_format(const ag_label_spec *s, char *buf, size_t cap);

/* sha256 of a file's bytes as 64 hex digits + NUL. -1 with ag_err naming the file. */
int ag_file_sha256(const char *path, char hex[65]);
/* sha256 of a memory buffer. */
void ag_sha256_hex(const void *data, size_t len, char hex[65]);
#endif
