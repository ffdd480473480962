/* Safetensors reader and writer: F16/BF16/F32 conversion against files written by the
 * Python `safetensors` package (tests/fixtures/gen_safetensors.py), a byte-exact match of
 * the writer with the Python library's output, a write/read round trip, and every kind of
 * bad file, each rejected with a message naming the file, the tensor and the problem. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "nn/error.h"
#include "tests/support/check.h"
#include "tests/support/fixture.h"

static char tmpdir[512];

static int bits_equal(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0;
}

static void test_mixed(void) {
    ag_st_file f;
    int rc = ag_st_open(&f, ARGENT_FIXTURES "/st_mixed.safetensors");
    if (!check_true("open Python-written mixed-dtype file", rc == 0)) { printf("  %s\n", ag_errmsg()); return; }
    check_true("metadata format is pt", f.format && !strcmp(f.format, "pt"));
    check_true("7 tensors listed", f.n == 7);
    agfx fx;
    if (agfx_load(&fx, ARGENT_FIXTURES "/st_mixed.agfx")) { check_true("load st_mixed.agfx", 0); ag_st_close(&f); return; }
    const char *names[] = {"enc.f16", "enc.bf16", "enc.f32", "scalar16"};
    for (int k = 0; k < 4; k++) {
        size_t n;
        const float *want = agfx_f32(&fx, names[k], &n);
        int i = ag_st_find(&f, names[k]);
        float *got = malloc(n * sizeof *got);
        char what[128];
        snprintf(what, sizeof what, "%s converts bit-exactly like torch .float() (zeros, subnormals, inf)", names[k]);
        check_true(what, i >= 0 && ag_st_read_f32(&f, i, got, n) == 0 && bits_equal(got, want, n));
        free(got);
    }
    int i = ag_st_find(&f, "enc.bf16");
    check_true("bf16 shape [3,4,2]", i >= 0 && f.t[i].ndim == 3 && f.t[i].shape[0] == 3 && f.t[i].shape[1] == 4 &&
                                       f.t[i].shape[2] == 2 && f.t[i].dtype == AG_ST_BF16);
    i = ag_st_find(&f, "scalar16");
    check_true("scalar has ndim 0, numel 1", i >= 0 && f.t[i].ndim == 0 && f.t[i].numel == 1);
    float nan2[2];
    i = ag_st_find(&f, "nan16");
    check_true("f16 NaNs stay NaN", i >= 0 && ag_st_read_f32(&f, i, nan2, 2) == 0 && isnan(nan2[0]) && isnan(nan2[1]));
    i = ag_st_find(&f, "nanbf16");
    check_true("bf16 NaN stays NaN", i >= 0 && ag_st_read_f32(&f, i, nan2, 2) == 0 && isnan(nan2[0]) && nan2[1] == 1.0f);
    /* I64 is a valid safetensors dtype (position_ids buffers) but not a float. */
    i = ag_st_find(&f, "embeddings.position_ids");
    float ten[10];
    rc = i >= 0 ? ag_st_read_f32(&f, i, ten, 10) : 0;
    check_true("I64 tensor listed but refused as float, naming it",
               i >= 0 && f.t[i].dtype == AG_ST_I64 && rc != 0 && strstr(ag_errmsg(), "embeddings.position_ids") &&
                   strstr(ag_errmsg(), "I64"));
    i = ag_st_find(&f, "enc.f32");
    check_true("wrong caller element count refused", ag_st_read_f32(&f, i, ten, 10) != 0 && strstr(ag_errmsg(), "enc.f32"));
    check_true("absent name -> -1", ag_st_find(&f, "nope") == -1);
    agfx_free(&fx);
    ag_st_close(&f);
}

/* The tensors of gen_safetensors.py's ref_tensors(). */
#define NREF 6
static const char *ref_names[NREF] = {"layer.2.weight", "layer.10.weight", "a.bias", "empty", "scalar", "Z.upper"};
static const int ref_nd[NREF] = {2, 2, 1, 1, 0, 3};
static const int64_t ref_shape[NREF][3] = {{3, 4}, {2, 2}, {5}, {0}, {0}, {2, 1, 3}};

static void test_writer(void) {
    float *data[NREF];
    ag_st_entry e[NREF];
    for (int t = 0; t < NREF; t++) {
        size_t n = 1;
        for (int d = 0; d < ref_nd[t]; d++) n *= (size_t)ref_shape[t][d];
        data[t] = malloc((n ? n : 1) * sizeof(float));
        for (size_t k = 0; k < n; k++) data[t][k] = (float)(k % 17) * 0.25f - (float)t - 1.5f;
        e[t] = (ag_st_entry){ref_names[t], ref_nd[t], ref_shape[t], data[t]};
    }
    char path[600];
    snprintf(path, sizeof path, "%s/written.safetensors", tmpdir);
    int rc = ag_st_write(path, e, NREF, "pt");
    if (rc) printf("  %s\n", ag_errmsg());
    check_true("write F32 safetensors", rc == 0);
    /* Byte-for-byte what safetensors.torch.save_file wrote for the same tensors. */
    FILE *a = fopen(path, "rb"), *b = fopen(ARGENT_FIXTURES "/st_ref_f32.safetensors", "rb");
    int same = a && b;
    while (same) {
        int x = fgetc(a), y = fgetc(b);
        if (x != y) same = 0;
        if (x == EOF || y == EOF) break;
    }
    if (a) fclose(a);
    if (b) fclose(b);
    check_true("bytes identical to the Python library's file (sorted names, padded header)", same);
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    check_true("no .tmp left behind", access(tmp, F_OK) != 0);

    ag_st_file f;
    rc = ag_st_open(&f, path);
    check_true("read back", rc == 0);
    int ok = rc == 0 && f.n == NREF;
    for (int t = 0; ok && t < NREF; t++) {
        int i = ag_st_find(&f, ref_names[t]);
        ok = i >= 0 && f.t[i].ndim == ref_nd[t] && f.t[i].dtype == AG_ST_F32;
        for (int d = 0; ok && d < ref_nd[t]; d++) ok = f.t[i].shape[d] == ref_shape[t][d];
        if (!ok) break;
        float *got = malloc((f.t[i].numel ? f.t[i].numel : 1) * sizeof(float));
        ok = ag_st_read_f32(&f, i, got, f.t[i].numel) == 0 && bits_equal(got, data[t], f.t[i].numel);
        free(got);
    }
    check_true("round trip: names, shapes, values exact", ok);
    ag_st_close(&f);

    ag_st_entry dup[2] = {e[0], e[0]};
    check_true("duplicate names refused", ag_st_write(path, dup, 2, NULL) != 0 && strstr(ag_errmsg(), "layer.2.weight"));
    snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", tmpdir);
    check_true("unwritable path reported", ag_st_write(path, e, 1, NULL) != 0 && strstr(ag_errmsg(), "x.safetensors"));
    for (int t = 0; t < NREF; t++) free(data[t]);
}

/* Write a file: 8-byte length (hlen, or the JSON's length when hlen < 0), the JSON, then
 * `data` bytes of 0x3f. */
static void put_file(const char *path, const char *json, long long hlen, size_t data) {
    FILE *f = fopen(path, "wb");
    unsigned long long n = hlen < 0 ? strlen(json) : (unsigned long long)hlen;
    for (int k = 0; k < 8; k++) fputc((int)((n >> (8 * k)) & 0xff), f);
    fwrite(json, 1, strlen(json), f);
    for (size_t k = 0; k < data; k++) fputc(0x3f, f);
    fclose(f);
}

/* Expect rejection with every needle in the message (and the file's name). */
static void bad(const char *what, const char *json, long long hlen, size_t data, const char *n1, const char *n2) {
    char path[600];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    put_file(path, json, hlen, data);
    ag_st_file f;
    ag_err_clear();
    int rc = ag_st_open(&f, path);
    const char *m = ag_errmsg();
    int ok = rc != 0 && strstr(m, "bad.safetensors") && (!n1 || strstr(m, n1)) && (!n2 || strstr(m, n2)) &&
             f.n == 0 && f.t == NULL && f.map == NULL;
    char label[256];
    snprintf(label, sizeof label, "rejects %s", what);
    check_true(label, ok);
    printf("      -> %s\n", m);
    if (rc == 0) ag_st_close(&f);
}

static void test_bad_files(void) {
    char path[600];
    /* Empty file. */
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    fclose(fopen(path, "wb"));
    ag_st_file f;
    check_true("rejects an empty file", ag_st_open(&f, path) != 0 && strstr(ag_errmsg(), "empty"));
    printf("      -> %s\n", ag_errmsg());
    /* Shorter than the length field. */
    FILE *fp = fopen(path, "wb");
    fwrite("\x10\x00\x00", 1, 3, fp);
    fclose(fp);
    check_true("rejects a 3-byte file", ag_st_open(&f, path) != 0 && strstr(ag_errmsg(), "too short"));
    printf("      -> %s\n", ag_errmsg());
    snprintf(path, sizeof path, "%s/does-not-exist.safetensors", tmpdir);
    check_true("reports a missing file", ag_st_open(&f, path) != 0 && strstr(ag_errmsg(), "does-not-exist"));

    const char *ok1 = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    bad("header length beyond the file", ok1, 5000, 8, "past the end", NULL);
    bad("absurd header length", ok1, (long long)1 << 40, 8, "exceeds the maximum", NULL);
    bad("truncated data (offsets past the end)", ok1, -1, 4, "'w'", "outside the data section");
    bad("invalid JSON", "{\"w\":{\"dtype\":\"F32\",", -1, 8, "invalid", NULL);
    bad("a header that is not an object", "[1,2,3]", -1, 0, "not a JSON object", NULL);
    bad("offsets outside the data", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", -1, 8, "'w'",
        "outside");
    bad("decreasing offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", -1, 8, "'w'",
        "increasing");
    bad("overlapping tensors",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
        -1, 12, "overlap", "'b'");
    bad("wrong byte count for dtype x shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", -1, 8,
        "'w'", "needs 12 bytes");
    bad("unknown dtype", "{\"w\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8, "'w'",
        "unknown dtype \"Q4\"");
    bad("a gap between tensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", -1, 12, "'w'",
        "gap");
    bad("trailing bytes", ok1, -1, 20, "trailing", NULL);
    bad("a negative dimension", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", -1, 8, "'w'",
        "shape[0]");
    bad("missing data_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", -1, 8, "'w'", "data_offsets");
    bad("duplicate tensor names",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
        -1, 8, "invalid", "duplicate");
    bad("non-string metadata", "{\"__metadata__\":{\"format\":1}}", -1, 0, "__metadata__", NULL);
    bad("an element count that overflows",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", -1, 8, "'w'",
        "too large");

    /* The real file must be untouched by all of this: a truncated copy of a good file. */
    FILE *src = fopen(ARGENT_FIXTURES "/st_ref_f32.safetensors", "rb");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, src);
    fclose(src);
    snprintf(path, sizeof path, "%s/trunc.safetensors", tmpdir);
    fp = fopen(path, "wb");
    fwrite(buf, 1, n - 6, fp);
    fclose(fp);
    check_true("rejects a file truncated by 6 bytes, naming a tensor",
               ag_st_open(&f, path) != 0 && strstr(ag_errmsg(), "tensor '") && strstr(ag_errmsg(), "truncated"));
    printf("      -> %s\n", ag_errmsg());
}

static void test_half(void) {
    /* Spot values straight from the IEEE encodings. */
    check_true("f16 0x3c00 = 1", ag_f16_to_f32(0x3c00) == 1.0f);
    check_true("f16 0xc000 = -2", ag_f16_to_f32(0xc000) == -2.0f);
    check_true("f16 0x0001 = 2^-24", ag_f16_to_f32(0x0001) == ldexpf(1, -24));
    check_true("f16 0x03ff = 1023 * 2^-24", ag_f16_to_f32(0x03ff) == 1023 * ldexpf(1, -24));
    check_true("f16 0x7c00 = inf", isinf(ag_f16_to_f32(0x7c00)) && ag_f16_to_f32(0x7c00) > 0);
    check_true("f16 0x8000 = -0", ag_f16_to_f32(0x8000) == 0 && signbit(ag_f16_to_f32(0x8000)));
    check_true("bf16 0x3f80 = 1", ag_bf16_to_f32(0x3f80) == 1.0f);
    /* Every f16 pattern: normal values agree with a formula. */
    int ok = 1;
    for (uint32_t h = 0; h < 0x10000 && ok; h++) {
        uint32_t e = (h >> 10) & 31, m = h & 1023;
        if (e == 31) continue;
        double v = e ? ldexp(1.0 + m / 1024.0, (int)e - 15) : ldexp(m / 1024.0, -14);
        if (h & 0x8000) v = -v;
        ok = ag_f16_to_f32((uint16_t)h) == (float)v;
    }
    check_true("all finite f16 patterns decode exactly", ok);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp-test-safetensors-%d", ARGENT_BUILD_DIR, (int)getpid());
    mkdir(tmpdir, 0755);
    test_half();
    test_mixed();
    test_writer();
    test_bad_files();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) printf("note: could not remove %s\n", tmpdir);
    return check_finish();
}
