/* Text readers, label parsing, UTF-8 checks and sha256 on small inline inputs (quotes,
 * embedded newlines, headers, column selection, bad rows with file:line messages, empty and
 * garbage files), then row counts of the real data files when ../shared/data is there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/readers.h"
#include "nn/error.h"
#include "tests/support/check.h"

static char dir[512];

static const char *put(const char *name, const char *data, size_t len) {
    static char path[8][1024];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 1024, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, len, f) != len) { printf("cannot write %s\n", p); exit(1); }
    fclose(f);
    return p;
}
#define PUT(name, lit) put(name, lit, sizeof(lit) - 1)

static ag_reader *open1(const char *path, ag_format fmt, int header) {
    ag_reader_opts o = {.format = fmt, .header = header};
    ag_reader *r = ag_reader_open(&path, 1, &o);
    if (!r) printf("     open %s: %s\n", path, ag_errmsg());
    return r;
}

static int has(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

static int field_is(const ag_row *row, int k, const char *want) {
    if (k >= row->n) return 0;
    if (row->len[k] != strlen(want) || strcmp(row->field[k], want)) {
        printf("     field %d: got [%s] want [%s]\n", k, row->field[k], want);
        return 0;
    }
    return 1;
}

static void test_csv(void) {
    /* BOM, CRLF, quoted commas, doubled quotes, an embedded newline, an empty field,
     * a blank line, no newline at the end */
    const char *p = PUT("a.csv", "\xEF\xBB\xBFsentence1,sentence2,score\r\n"
                                 "\"Hello, world\",plain,1.5\r\n"
                                 "\"say \"\"hi\"\"\",\"two\nlines\",2\r\n"
                                 "\r\n"
                                 ",\"\",3\n"
                                 "last,row,4");
    ag_reader *r = open1(p, AG_FMT_CSV, 1);
    if (!check_true("csv: open with header", r != NULL)) return;
    check_true("csv: 3 columns", ag_reader_ncols(r) == 3);
    check_true("csv: header name without BOM", !strcmp(ag_reader_header(r, 0), "sentence1"));
    check_true("csv: column by name", ag_reader_column(r, "score") == 2);
    check_true("csv: column by number", ag_reader_column(r, "1") == 1);
    check_true("csv: unknown column", ag_reader_column(r, "label") < 0 && has(ag_errmsg(), "columns: sentence1, sentence2, score"));
    check_true("csv: column out of range", ag_reader_column(r, "3") < 0 && has(ag_errmsg(), "out of range"));
    ag_row row;
    check_true("csv: row 1", ag_reader_next(r, &row) == AG_ROW_OK && row.line == 2 && row.index == 0 &&
                                  field_is(&row, 0, "Hello, world") && field_is(&row, 1, "plain") && field_is(&row, 2, "1.5"));
    check_true("csv: doubled quotes, embedded newline", ag_reader_next(r, &row) == AG_ROW_OK && row.line == 3 &&
                                  field_is(&row, 0, "say \"hi\"") && field_is(&row, 1, "two\nlines"));
    check_true("csv: blank line skipped, empty fields, line counts the embedded newline",
               ag_reader_next(r, &row) == AG_ROW_OK && row.line == 6 && row.index == 2 && field_is(&row, 0, "") &&
                   field_is(&row, 1, "") && field_is(&row, 2, "3"));
    check_true("csv: last row without newline", ag_reader_next(r, &row) == AG_ROW_OK && row.line == 7 && field_is(&row, 1, "row"));
    check_true("csv: eof", ag_reader_next(r, &row) == AG_ROW_EOF);
    check_true("csv: eof again", ag_reader_next(r, &row) == AG_ROW_EOF);
    ag_reader_close(r);

    /* no header: the first row sets the field count; quotes in unquoted fields stay */
    p = PUT("b.csv", "a,b,c\n1,2\nx,y\"z,\"q\"\n\"bad\"x,2,3\nok,\"emb\r\nedded\",1\n\"never closed,1,2\nmore\n");
    r = open1(p, AG_FMT_CSV, 0);
    if (!check_true("csv2: open", r != NULL)) return;
    check_true("csv2: column by name needs a header", ag_reader_column(r, "a") < 0 && has(ag_errmsg(), "without a header"));
    check_true("csv2: row 1", ag_reader_next(r, &row) == AG_ROW_OK && field_is(&row, 2, "c"));
    int rc = ag_reader_next(r, &row);
    check_true("csv2: short row is bad, names file:line and counts", rc == AG_ROW_BAD && row.line == 2 &&
                                  has(ag_errmsg(), "b.csv:2:") && has(ag_errmsg(), "expected 3 fields") &&
                                  has(ag_errmsg(), "found 2"));
    check_true("csv2: reading goes on; a quote inside an unquoted field is text",
               ag_reader_next(r, &row) == AG_ROW_OK && row.line == 3 && field_is(&row, 1, "y\"z") && field_is(&row, 2, "q"));
    rc = ag_reader_next(r, &row);
    check_true("csv2: text after a closing quote is bad", rc == AG_ROW_BAD && has(ag_errmsg(), "b.csv:4:") &&
                                  has(ag_errmsg(), "after a closing quote"));
    check_true("csv2: CRLF inside quotes is kept", ag_reader_next(r, &row) == AG_ROW_OK && row.line == 5 &&
                                  field_is(&row, 1, "emb\r\nedded"));
    rc = ag_reader_next(r, &row);
    check_true("csv2: unterminated quote at EOF names the line it opened on",
               rc == AG_ROW_BAD && row.line == 7 && has(ag_errmsg(), "b.csv:7:") && has(ag_errmsg(), "unterminated"));
    check_true("csv2: then eof", ag_reader_next(r, &row) == AG_ROW_EOF);
    ag_reader_close(r);

    /* a trailing comma is an empty last field */
    p = PUT("c.csv", "a,b,\n");
    r = open1(p, AG_FMT_CSV, 0);
    check_true("csv3: trailing comma", r && ag_reader_ncols(r) == 3 && ag_reader_next(r, &row) == AG_ROW_OK && field_is(&row, 2, ""));
    ag_reader_close(r);
}

static void test_tsv(void) {
    /* MRPC-style: quotes are plain characters, BOM and CRLF; an empty first field (STS 2016) */
    const char *p = PUT("a.tsv", "\xEF\xBB\xBFQuality\t#1 String\t#2 String\r\n"
                                 "1\tHe called him \"the witness\", again.\t\"Quoted start\r\n"
                                 "\tno score\tsecond\r\n"
                                 "\r\n"
                                 "1\ttoo\tmany\tfields\r\n"
                                 "0\tlast\tone");
    ag_reader *r = open1(p, AG_FMT_TSV, 1);
    if (!check_true("tsv: open", r != NULL)) return;
    check_true("tsv: names with spaces and #", ag_reader_column(r, "#2 String") == 2 && ag_reader_column(r, "Quality") == 0);
    ag_row row;
    check_true("tsv: quotes kept as text", ag_reader_next(r, &row) == AG_ROW_OK && row.line == 2 &&
                                  field_is(&row, 1, "He called him \"the witness\", again.") &&
                                  field_is(&row, 2, "\"Quoted start"));
    check_true("tsv: empty first field", ag_reader_next(r, &row) == AG_ROW_OK && field_is(&row, 0, "") && field_is(&row, 2, "second"));
    int rc = ag_reader_next(r, &row);
    check_true("tsv: too many fields is bad (as in the header)", rc == AG_ROW_BAD && row.line == 5 &&
                                  has(ag_errmsg(), "a.tsv:5:") && has(ag_errmsg(), "as in the header"));
    check_true("tsv: last row", ag_reader_next(r, &row) == AG_ROW_OK && row.index == 3 && field_is(&row, 1, "last"));
    check_true("tsv: eof", ag_reader_next(r, &row) == AG_ROW_EOF);
    ag_reader_close(r);
}

static void test_jsonl(void) {
    const char *p = PUT("a.jsonl", "{\"s1\": \"caf\\u00e9, \\\"q\\\"\", \"s2\": \"b\", \"score\": 4.5, \"n\": 3}\n"
                                   "\n"
                                   "{\"s1\": \"x\", \"s2\": null, \"score\": true}\n"
                                   "{\"s1\": \"x\"}\n"
                                   "{\"s1\": [1], \"s2\": \"b\", \"score\": 1}\n"
                                   "{\"s1\": \"x\", \"s2\": \"y\", \"score\": 1,}\n"
                                   "[1, 2]\n"
                                   "{\"s2\": \"y\", \"s1\": \"x\", \"score\": 2}\n");
    ag_reader *r = open1(p, AG_FMT_JSONL, 0);
    if (!check_true("jsonl: open", r != NULL)) return;
    check_true("jsonl: keys registered in order", ag_reader_column(r, "s1") == 0 && ag_reader_column(r, "s2") == 1 &&
                                                      ag_reader_column(r, "score") == 2 && ag_reader_column(r, "s1") == 0);
    ag_row row;
    check_true("jsonl: escapes decoded, number as text", ag_reader_next(r, &row) == AG_ROW_OK && row.n == 3 &&
                                                             field_is(&row, 0, "caf\xc3\xa9, \"q\"") && field_is(&row, 2, "4.5"));
    check_true("jsonl: blank line skipped; null empty, true as text", ag_reader_next(r, &row) == AG_ROW_OK && row.line == 3 &&
                                                                         field_is(&row, 1, "") && field_is(&row, 2, "true"));
    check_true("jsonl: missing key", ag_reader_next(r, &row) == AG_ROW_BAD && has(ag_errmsg(), "a.jsonl:4:") &&
                                         has(ag_errmsg(), "missing key \"s2\""));
    check_true("jsonl: array value", ag_reader_next(r, &row) == AG_ROW_BAD && has(ag_errmsg(), "array"));
    check_true("jsonl: invalid JSON", ag_reader_next(r, &row) == AG_ROW_BAD && has(ag_errmsg(), "a.jsonl:6:") &&
                                          has(ag_errmsg(), "invalid JSON"));
    check_true("jsonl: not an object", ag_reader_next(r, &row) == AG_ROW_BAD && has(ag_errmsg(), "expected a JSON object"));
    check_true("jsonl: key order in the line does not matter", ag_reader_next(r, &row) == AG_ROW_OK && field_is(&row, 0, "x") &&
                                                                 field_is(&row, 1, "y") && field_is(&row, 2, "2"));
    check_true("jsonl: no registering after reading", ag_reader_column(r, "other") < 0);
    check_true("jsonl: eof", ag_reader_next(r, &row) == AG_ROW_EOF);
    ag_reader_close(r);
}

static void test_lines(void) {
    const char *paths[3];
    paths[0] = PUT("d.s1", "A man sleeps . \nTwo dogs . \n");
    paths[1] = PUT("d.s2", "A person rests . \nCats . \n");
    paths[2] = PUT("d.labels", "entailment\ncontradiction\n");
    ag_reader_opts o = {.format = AG_FMT_LINES};
    ag_reader *r = ag_reader_open(paths, 3, &o);
    if (!check_true("lines: open 3 files", r != NULL)) return;
    check_true("lines: columns by extension and number", ag_reader_column(r, "s2") == 1 && ag_reader_column(r, "labels") == 2 &&
                                                            ag_reader_column(r, "0") == 0);
    check_true("lines: unknown extension", ag_reader_column(r, "s3") < 0);
    check_true("lines: number out of range", ag_reader_column(r, "3") < 0);
    ag_row row;
    check_true("lines: trailing space kept", ag_reader_next(r, &row) == AG_ROW_OK && row.line == 1 &&
                                                 field_is(&row, 0, "A man sleeps . ") && field_is(&row, 2, "entailment"));
    check_true("lines: second", ag_reader_next(r, &row) == AG_ROW_OK && row.line == 2 && field_is(&row, 1, "Cats . "));
    check_true("lines: eof", ag_reader_next(r, &row) == AG_ROW_EOF);
    ag_reader_close(r);

    paths[2] = PUT("e.labels", "entailment\n");
    r = ag_reader_open(paths, 3, &o);
    check_true("lines: open", r != NULL);
    int rc1 = r ? ag_reader_next(r, &row) : -9;
    int rc2 = r ? ag_reader_next(r, &row) : -9;
    check_true("lines: a shorter file is fatal and named", rc1 == AG_ROW_OK && rc2 == AG_ROW_FATAL &&
                                                              has(ag_errmsg(), "e.labels has 1 lines") && has(ag_errmsg(), "d.s1 has more"));
    ag_reader_close(r);
}

static void test_bad_bytes(void) {
    const char *p = PUT("u.tsv", "ok\tfine\nbad\xff\tx\nnul\0byte\ty\nover\xc0\x80long\tz\nlast\tw\n");
    ag_reader *r = open1(p, AG_FMT_TSV, 0);
    if (!check_true("utf8: open", r != NULL)) return;
    ag_row row;
    check_true("utf8: good row", ag_reader_next(r, &row) == AG_ROW_OK);
    check_true("utf8: invalid byte named with file:line", ag_reader_next(r, &row) == AG_ROW_BAD && has(ag_errmsg(), "u.tsv:2:") &&
                                                               has(ag_errmsg(), "invalid UTF-8 at byte 3"));
    check_true("utf8: NUL byte", ag_reader_next(r, &row) == AG_ROW_BAD && has(ag_errmsg(), "u.tsv:3:") && has(ag_errmsg(), "NUL"));
    check_true("utf8: overlong", ag_reader_next(r, &row) == AG_ROW_BAD && has(ag_errmsg(), "u.tsv:4:"));
    check_true("utf8: next good row", ag_reader_next(r, &row) == AG_ROW_OK && row.line == 5);
    ag_reader_close(r);

    size_t bad;
    check_true("utf8: valid 2/3/4-byte", ag_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, NULL));
    check_true("utf8: surrogate", !ag_utf8_valid("a\xed\xa0\x80", 4, &bad) && bad == 1);
    check_true("utf8: past U+10FFFF", !ag_utf8_valid("\xf4\x90\x80\x80", 4, NULL));
    check_true("utf8: truncated sequence", !ag_utf8_valid("ab\xe2\x82", 4, &bad) && bad == 2);
    check_true("utf8: stray continuation", !ag_utf8_valid("\x80", 1, NULL));
}

static void test_files(void) {
    ag_reader_opts o = {.format = AG_FMT_CSV};
    const char *p = PUT("empty.csv", "");
    ag_reader *r = ag_reader_open(&p, 1, &o);
    check_true("empty file: clear error", !r && has(ag_errmsg(), "empty.csv") && has(ag_errmsg(), "empty"));
    p = PUT("bom.csv", "\xEF\xBB\xBF");
    r = ag_reader_open(&p, 1, &o);
    check_true("BOM only: empty", !r && has(ag_errmsg(), "empty"));
    p = PUT("blank.csv", "\n\r\n\n");
    r = ag_reader_open(&p, 1, &o);
    check_true("blank lines only: no rows", !r && has(ag_errmsg(), "no rows"));
    const char *missing = "/nonexistent/dir/x.csv";
    r = ag_reader_open(&missing, 1, &o);
    check_true("missing file: cannot open, named", !r && has(ag_errmsg(), "x.csv: cannot open"));
    o.header = 1;
    o.format = AG_FMT_JSONL;
    p = PUT("h.jsonl", "{}\n");
    r = ag_reader_open(&p, 1, &o);
    check_true("header with jsonl refused", !r && has(ag_errmsg(), "csv and tsv only"));
    o.format = AG_FMT_CSV;
    p = PUT("hdr.csv", "\"a,b\n");
    r = ag_reader_open(&p, 1, &o);
    check_true("unreadable header", !r && has(ag_errmsg(), "header"));

    /* binary garbage in every format: no crash, only OK/BAD rows or a fatal error */
    size_t n = 200000;
    char *g = malloc(n);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        g[i] = (char)(x >> 24);
    }
    p = put("garbage.bin", g, n);
    free(g);
    ag_format fmts[4] = {AG_FMT_CSV, AG_FMT_TSV, AG_FMT_JSONL, AG_FMT_LINES};
    for (int f = 0; f < 4; f++) {
        ag_reader_opts go = {.format = fmts[f]};
        r = ag_reader_open(&p, 1, &go);
        int ok = 0, badn = 0, fatal = 0, rc;
        if (r && fmts[f] == AG_FMT_JSONL) ag_reader_column(r, "k");
        ag_row row;
        while (r && (rc = ag_reader_next(r, &row)) != AG_ROW_EOF) {
            if (rc == AG_ROW_OK) ok++;
            else if (rc == AG_ROW_BAD) badn++;
            else { fatal = 1; break; }
        }
        char what[128];
        snprintf(what, sizeof what, "garbage as %s: read through without a crash (%d ok, %d bad, fatal %d)",
                 ag_format_name(fmts[f]), ok, badn, fatal);
        check_true(what, r != NULL && badn > 0);
        ag_reader_close(r);
    }

    /* truncated CSV: a cut inside a quoted field is an unterminated quote */
    p = PUT("trunc.csv", "a,b\n\"x,y\",\"cut he");
    o.header = 0;
    r = ag_reader_open(&p, 1, &o);
    ag_row row;
    int rc1 = r ? ag_reader_next(r, &row) : -9, rc2 = r ? ag_reader_next(r, &row) : -9;
    check_true("truncated csv: bad last row", rc1 == AG_ROW_OK && rc2 == AG_ROW_BAD && has(ag_errmsg(), "trunc.csv:2:"));
    ag_reader_close(r);
}

static void test_formats(void) {
    ag_format f;
    check_true("guess .csv", !ag_format_guess("x/y.CSV", &f) && f == AG_FMT_CSV);
    check_true("guess .jsonl", !ag_format_guess("y.jsonl", &f) && f == AG_FMT_JSONL);
    check_true("guess fails on .s1", ag_format_guess("snli.s1", &f) && has(ag_errmsg(), "--format"));
    check_true("parse lines", !ag_format_parse("lines", &f) && f == AG_FMT_LINES);
    check_true("parse unknown", ag_format_parse("xml", &f) && has(ag_errmsg(), "csv, tsv, jsonl or lines"));
}

static void test_labels(void) {
    ag_label_spec s;
    ag_label_spec_init(&s);
    float v;
    check_true("map parse", !ag_label_map_parse(&s, "entailment=1,neutral=0,contradiction=0") && s.nmap == 3);
    s.kind = AG_LABEL_CLASS;
    check_true("map lookup", !ag_label_parse(&s, "neutral", 7, &v) && v == 0.0f);
    check_true("map lookup, spaces trimmed", !ag_label_parse(&s, " entailment\r", 12, &v) && v == 1.0f);
    check_true("unmapped label lists the names", ag_label_parse(&s, "-", 1, &v) &&
                                                     has(ag_errmsg(), "unmapped label '-' (expected one of: entailment, neutral, contradiction)"));
    char buf[256];
    ag_label_map_format(&s, buf, sizeof buf);
    check_true("map format", !strcmp(buf, "entailment=1,neutral=0,contradiction=0"));
    ag_label_spec_free(&s);

    ag_label_spec_init(&s);
    check_true("map: duplicate", ag_label_map_parse(&s, "a=1,a=2") && has(ag_errmsg(), "twice"));
    ag_label_spec_free(&s);
    ag_label_spec_init(&s);
    check_true("map: not name=value", ag_label_map_parse(&s, "a=1,b") && has(ag_errmsg(), "'b' is not name=value"));
    ag_label_spec_free(&s);
    ag_label_spec_init(&s);
    check_true("map: value not a number", ag_label_map_parse(&s, "a=x") && has(ag_errmsg(), "not a number"));
    ag_label_spec_free(&s);
    ag_label_spec_init(&s);
    check_true("map: trailing comma", ag_label_map_parse(&s, "a=1,") && has(ag_errmsg(), "trailing comma"));
    ag_label_spec_free(&s);

    ag_label_spec_init(&s);
    s.kind = AG_LABEL_SCORE;
    check_true("scale parse", !ag_score_scale_parse(&s, "0:5"));
    check_true("scale: 4.75 -> float32(4.75/5)", !ag_label_parse(&s, "4.75", 4, &v) && v == (float)(4.75 / 5.0));
    check_true("scale: 2.615 -> float32(2.615/5)", !ag_label_parse(&s, "2.615", 5, &v) && v == (float)(2.615 / 5.0));
    check_true("scale: outside", ag_label_parse(&s, "5.5", 3, &v) && has(ag_errmsg(), "outside --score-scale 0:5"));
    check_true("score: unparsable", ag_label_parse(&s, "4.5x", 4, &v) && has(ag_errmsg(), "unparsable score '4.5x'"));
    check_true("score: nan refused", ag_label_parse(&s, "nan", 3, &v));
    check_true("score: empty", ag_label_parse(&s, "", 0, &v) && has(ag_errmsg(), "empty label"));
    check_true("scale: bad spec", ag_score_scale_parse(&s, "5:0") && ag_score_scale_parse(&s, "0-5"));
    check_true("scale 1:5: 3 -> 0.5, 1 -> 0, 5 -> 1", !ag_score_scale_parse(&s, "1:5") && !ag_label_parse(&s, "3", 1, &v) &&
                                                        v == 0.5f && !ag_label_parse(&s, "1", 1, &v) && v == 0.0f &&
                                                        !ag_label_parse(&s, "5", 1, &v) && v == 1.0f);
    ag_label_spec_free(&s);

    ag_label_spec_init(&s);
    s.kind = AG_LABEL_CLASS;
    check_true("class: a number", !ag_label_parse(&s, "2", 1, &v) && v == 2.0f);
    check_true("class: not whole", ag_label_parse(&s, "1.5", 3, &v) && has(ag_errmsg(), "not a whole number"));
    check_true("class: negative", ag_label_parse(&s, "-1", 2, &v));
    ag_label_spec_free(&s);
    ag_label_kind k;
    check_true("label kind parse", !ag_label_kind_parse("class", &k) && k == AG_LABEL_CLASS && ag_label_kind_parse("int", &k));
}

static void test_sha256(void) {
    char hex[65];
    ag_sha256_hex("abc", 3, hex);
    check_true("sha256(abc)", !strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    ag_sha256_hex("", 0, hex);
    check_true("sha256(empty)", !strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    const char *p = put("sha.txt", m, strlen(m));
    check_true("sha256 of a file (two blocks)", !ag_file_sha256(p, hex) &&
                                                   !strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    check_true("sha256 of a missing file", ag_file_sha256("/nonexistent/f", hex) && has(ag_errmsg(), "/nonexistent/f"));
}

/* Rows read from a real file; -1 on a bad row or an error. Counts non-empty `col` fields. */
static long count_rows(const char *const *paths, int n, ag_format fmt, int header, int col, long *nonempty, int *quotes) {
    ag_reader_opts o = {.format = fmt, .header = header};
    ag_reader *r = ag_reader_open(paths, n, &o);
    if (!r) { printf("     %s\n", ag_errmsg()); return -1; }
    long rows = 0;
    ag_row row;
    int rc;
    while ((rc = ag_reader_next(r, &row)) == AG_ROW_OK) {
        rows++;
        if (nonempty && row.len[col] > 0) (*nonempty)++;
        if (quotes)
            for (int k = 0; k < row.n; k++)
                if (strchr(row.field[k], '"')) *quotes = 1;
    }
    if (rc != AG_ROW_EOF) { printf("     %s\n", ag_errmsg()); rows = -1; }
    ag_reader_close(r);
    return rows;
}

static void test_real(void) {
    const char *d = ARGENT_SHARED "/data";
    char p[6][1024];
    struct stat sb;
    snprintf(p[0], 1024, "%s/stsb/stsb-en-train.csv", d);
    if (stat(p[0], &sb)) { printf("SKIP real files: %s not found\n", d); return; }
    const char *pp[3] = {p[0], p[1], p[2]};
    check_true("real: STS-B train 5,749 rows", count_rows(pp, 1, AG_FMT_CSV, 0, 0, NULL, NULL) == 5749);
    snprintf(p[0], 1024, "%s/stsb/stsb-en-dev.csv", d);
    check_true("real: STS-B dev 1,500 rows", count_rows(pp, 1, AG_FMT_CSV, 0, 0, NULL, NULL) == 1500);
    snprintf(p[0], 1024, "%s/nli/snli-dev.s1", d);
    snprintf(p[1], 1024, "%s/nli/snli-dev.s2", d);
    snprintf(p[2], 1024, "%s/nli/snli-dev.labels", d);
    check_true("real: SNLI dev 9,842 rows", count_rows(pp, 3, AG_FMT_LINES, 0, 0, NULL, NULL) == 9842);
    snprintf(p[0], 1024, "%s/nli/mnli-dev-matched.tsv", d);
    check_true("real: MNLI dev-matched 9,815 rows", count_rows(pp, 1, AG_FMT_TSV, 1, 0, NULL, NULL) == 9815);
    const char *mrpc[3] = {"train", "val", "test"};
    const long want[3] = {3576, 500, 1725};
    int quotes = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(p[0], 1024, "%s/mrpc/msr-para-%s.tsv", d, mrpc[i]);
        char what[64];
        snprintf(what, sizeof what, "real: MRPC %s %ld rows", mrpc[i], want[i]);
        check_true(what, count_rows(pp, 1, AG_FMT_TSV, 1, 0, NULL, &quotes) == want[i]);
    }
    check_true("real: MRPC quotes kept inside fields", quotes);
    long scored = 0;
    snprintf(p[0], 1024, "%s/sts2016/question-question.test.tsv", d);
    check_true("real: STS 2016 1,555 rows", count_rows(pp, 1, AG_FMT_TSV, 0, 0, &scored, NULL) == 1555);
    check_true("real: STS 2016 209 scored", scored == 209);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s/test_readers.tmp", ARGENT_BUILD_DIR);
    mkdir(dir, 0755);
    test_csv();
    test_tsv();
    test_jsonl();
    test_lines();
    test_bad_bytes();
    test_files();
    test_formats();
    test_labels();
    test_sha256();
    test_real();
    return check_finish();
}
