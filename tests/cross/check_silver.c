/* Checks the outputs of `argent label` against its input, for the label tests:
 *   check_silver INPUT.h5 SILVER.h5 SCORES.h5 CKPT RULE [THRESHOLD]
 * SILVER must hold exactly the input's sentences (text and pieces) and pairs, in order (no
 * pair missing or doubled), source silver, the label kind of RULE, and labels equal to the
 * last column of SCORES; SCORES [P, 2L+1] must hold logits, then probabilities equal to the
 * sigmoid / softmax of those logits, then the label the rule gives; the provenance
 * attributes must name the checkpoint with its sha256. Exit 0 when all hold. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/dataset.h"
#include "io/readers.h"
#include "nn/error.h"
#include "tests/support/check.h"

static float *read_scores(const char *path, int64_t *rows, int *cols) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return NULL;
    hid_t d = H5Dopen2(f, "scores", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    *rows = (int64_t)dims[0];
    *cols = (int)dims[1];
    float *x = malloc(dims[0] * dims[1] * sizeof *x);
    H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    return x;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: check_silver INPUT SILVER SCORES CKPT argmax|threshold|prob [THRESHOLD]\n");
        return 2;
    }
    const char *rule = argv[5];
    double thr = argc > 6 ? atof(argv[6]) : 0.5;
    ag_dataset in, out;
    ag_dataset_init(&in);
    ag_dataset_init(&out);
    if (!check_true("read input", ag_dataset_read(argv[1], &in) == 0) ||
        !check_true("read silver", ag_dataset_read(argv[2], &out) == 0)) {
        printf("%s\n", ag_errmsg());
        return check_finish();
    }
    int64_t P = in.n_pairs, S = in.n_sentences;
    int same = out.n_pairs == P && out.n_sentences == S;
    for (int64_t i = 0; same && i < P; i++) same = in.a[i] == out.a[i] && in.b[i] == out.b[i] && in.line[i] == out.line[i];
    check_true("every input pair once, in order (none missing or doubled)", same);
    same = out.n_sentences == S && in.text_off[S] == out.text_off[S] && !memcmp(in.text, out.text, (size_t)in.text_off[S]) &&
           in.tok_off[S] == out.tok_off[S] && !memcmp(in.tok, out.tok, (size_t)in.tok_off[S] * sizeof *in.tok);
    check_true("sentences and pieces unchanged", same);
    check_true("source silver", out.source == AG_SOURCE_SILVER);
    check_true("label kind of the rule", !strcmp(rule, "prob") ? out.label_kind == AG_LABEL_SCORE
                                                               : out.label_kind == AG_LABEL_CLASS);

    int64_t rows = 0;
    int cols = 0;
    float *sc = read_scores(argv[3], &rows, &cols);
    if (!check_true("scores readable", sc && rows == P && cols >= 3 && cols % 2 == 1)) return check_finish();
    int L = (cols - 1) / 2, ok_prob = 1, ok_rule = 1, ok_label = 1;
    for (int64_t i = 0; i < P; i++) {
        const float *r = sc + i * cols;
        double mx = r[0], z = 0;
        for (int k = 1; k < L; k++) mx = fmax(mx, r[k]);
        for (int k = 0; k < L; k++) z += exp(r[k] - mx);
        for (int k = 0; k < L; k++) {
            double want = L == 1 ? 1.0 / (1.0 + exp(-r[0])) : exp(r[k] - mx) / z;
            ok_prob &= fabs(r[L + k] - want) <= 1e-6;
        }
        float lab = r[2 * L], pos = L == 1 ? r[1] : r[L + 1];
        if (!strcmp(rule, "argmax")) {
            int best = 0;
            for (int k = 1; k < L; k++)
                if (r[k] > r[best]) best = k;
            ok_rule &= lab == (float)best;
        } else if (!strcmp(rule, "threshold")) {
            ok_rule &= lab == (pos >= (float)thr ? 1.0f : 0.0f);
        } else {
            ok_rule &= lab == pos;
        }
        ok_label &= out.label[i] == lab;
    }
    check_true("probabilities = sigmoid / softmax of the logits", ok_prob);
    check_true("label column follows the rule", ok_rule);
    check_true("silver labels = the scores' label column", ok_label);
    free(sc);

    char sha[65];
    const ag_attr *a = ag_dataset_attr_get(&out, "label_checkpoint_sha256");
    check_true("provenance: checkpoint sha256",
               a && a->kind == AG_ATTR_STR && !ag_file_sha256(argv[4], sha) && !strcmp(a->s, sha));
    check_true("provenance: settings and time", ag_dataset_attr_get(&out, "label_settings") &&
                                                    ag_dataset_attr_get(&out, "label_time") &&
                                                    ag_dataset_attr_get(&out, "label_checkpoint"));
    ag_dataset_free(&in);
    ag_dataset_free(&out);
    return check_finish();
}
