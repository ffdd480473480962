/* HDF5 checkpoints: round trip of every tensor, AdamW moment and metadata field; mismatch
 * reports that list every difference; kill-safety (a process killed between writing the
 * .tmp and the rename leaves the previous checkpoint as the newest complete one); keep-K
 * pruning; corrupt, truncated, empty and foreign files reported clearly. */
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "nn/error.h"
#include "tests/support/check.h"

static char dir[512];

/* A tiny cross-encoder: every table feature (prefix, pooler, classifier) in a few KB. */
static void tiny_desc(ag_model_desc *md, int inter) {
    ag_model_desc_init(md);
    md->kind = AG_MODEL_CROSS_ENCODER;
    md->vocab_size = 12;
    md->hidden_size = 8;
    md->num_hidden_layers = 2;
    md->num_attention_heads = 2;
    md->intermediate_size = inter;
    md->max_position_embeddings = 16;
    md->max_seq_length = 16;
    md->has_pooler = 1;
    md->num_labels = 3;
    snprintf(md->id2label[0], AG_LABEL_MAX, "contradiction");
    snprintf(md->id2label[1], AG_LABEL_MAX, "entailment");
    snprintf(md->id2label[2], AG_LABEL_MAX, "neutral");
    snprintf(md->architecture, sizeof md->architecture, "BertForSequenceClassification");
    md->pooling = AG_POOL_CLS;
    md->st_lower_case = 1;
    const char *v = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\nc\n##d\né\n\xe4\xb8\xad\nz\n";
    md->vocab_len = strlen(v);
    md->vocab = strdup(v);
}

static int build(const ag_model_desc *md, ag_bert *m, ag_params *p) {
    ag_params_init(p);
    if (ag_model_register(md, m, p, NULL) || ag_params_alloc(p)) {
        printf("  build: %s\n", ag_errmsg());
        return -1;
    }
    return 0;
}

static void fill(float *x, size_t n, float base) {
    for (size_t i = 0; i < n; i++) x[i] = base + (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
}

static void train_state(ag_train_state *ts, int64_t step) {
    ag_train_state_init(ts);
    ts->step = step;
    ts->world_size = 3;
    ts->rng_seed = 0xfedcba9876543210ull;
    ts->epoch = 2;
    ts->sample_index = 12345;
    snprintf(ts->schedule, sizeof ts->schedule, "linear");
    ts->peak_lr = 2e-5;
    ts->last_lr = 1.5e-5;
    ts->warmup_steps = 100;
    ts->total_steps = 1000;
    ts->weight_decay = 0.01;
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

static void test_round_trip(void) {
    ag_model_desc md, got;
    ag_bert m;
    ag_params p;
    tiny_desc(&md, 16);
    if (build(&md, &m, &p)) { check_true("build tiny model", 0); return; }
    fill(p.data, p.total, 0.25f);
    float *mo = malloc(p.total * sizeof *mo), *vo = malloc(p.total * sizeof *vo);
    fill(mo, p.total, -1);
    fill(vo, p.total, 2);
    ag_train_state ts, ts2;
    train_state(&ts, 10);
    int rc = ag_ckpt_save_dir(dir, 2, &md, &ts, &p, mo, vo);
    if (rc) printf("  %s\n", ag_errmsg());
    check_true("save ckpt-000010.h5 with optimizer state", rc == 0);

    char path[700], latest[700];
    ag_ckpt_path(path, sizeof path, dir, 10);
    check_true("named ckpt-000010.h5", strstr(path, "/ckpt-000010.h5") && file_exists(path));
    check_true("latest finds it", ag_ckpt_latest(dir, latest, sizeof latest) == 1 && !strcmp(latest, path));

    ag_model_desc_init(&got);
    int ho = -1;
    rc = ag_ckpt_read_info(path, &got, &ts2, &ho);
    if (rc) printf("  %s\n", ag_errmsg());
    check_true("read info", rc == 0);
    check_true("config equal (diff is empty)", rc == 0 && ag_model_desc_diff(&md, &got) == 0);
    check_true("all description fields back",
               got.kind == AG_MODEL_CROSS_ENCODER && got.vocab_size == 12 && got.hidden_size == 8 &&
                   got.num_hidden_layers == 2 && got.num_attention_heads == 2 && got.intermediate_size == 16 &&
                   got.max_position_embeddings == 16 && got.type_vocab_size == 2 && got.pad_token_id == 0 &&
                   got.layer_norm_eps == 1e-12 && got.hidden_dropout_prob == 0.1 &&
                   got.attention_probs_dropout_prob == 0.1 && got.initializer_range == 0.02 &&
                   !strcmp(got.hidden_act, "gelu") && !strcmp(got.architecture, "BertForSequenceClassification") &&
                   got.has_pooler == 1 && got.num_labels == 3 && !strcmp(got.id2label[0], "contradiction") &&
                   !strcmp(got.id2label[2], "neutral") && got.pooling == AG_POOL_CLS && got.normalize == 0 &&
                   got.max_seq_length == 16 && got.do_lower_case == 1 && got.st_lower_case == 1);
    check_true("vocab text back byte for byte (UTF-8 included)",
               got.vocab && got.vocab_len == md.vocab_len && !memcmp(got.vocab, md.vocab, md.vocab_len));
    check_true("training state back",
               ho == 1 && ts2.step == 10 && ts2.world_size == 3 && ts2.rng_seed == 0xfedcba9876543210ull &&
                   ts2.epoch == 2 && ts2.sample_index == 12345 && !strcmp(ts2.schedule, "linear") &&
                   ts2.peak_lr == 2e-5 && ts2.last_lr == 1.5e-5 && ts2.warmup_steps == 100 &&
                   ts2.total_steps == 1000 && ts2.beta1 == 0.9 && ts2.beta2 == 0.999 && ts2.eps == 1e-8 &&
                   ts2.weight_decay == 0.01);
    check_true("no loss scale written, none read back (0)", ts2.loss_scale == 0 && ts2.loss_scale_tracker == 0);
    ag_model_desc_free(&got);

    /* An fp16 run's loss scale and growth tracker round-trip. */
    ag_train_state ts3;
    train_state(&ts3, 11);
    ts3.loss_scale = 16384;
    ts3.loss_scale_tracker = 1999;
    rc = ag_ckpt_save_dir(dir, 3, &md, &ts3, &p, mo, vo);
    char path11[700];
    ag_ckpt_path(path11, sizeof path11, dir, 11);
    ag_model_desc_init(&got);
    rc = rc || ag_ckpt_read_info(path11, &got, &ts2, &ho);
    check_true("fp16 loss scale 16384 and growth tracker 1999 back", rc == 0 && ts2.loss_scale == 16384 &&
                                                                    ts2.loss_scale_tracker == 1999);
    ag_model_desc_free(&got);
    remove(path11);

    ag_bert m2;
    ag_params p2;
    build(&md, &m2, &p2);
    float *m2o = calloc(p2.total, sizeof *m2o), *v2o = calloc(p2.total, sizeof *v2o);
    rc = ag_ckpt_load(path, &md, &p2, m2o, v2o);
    if (rc) printf("  %s\n", ag_errmsg());
    int same = rc == 0;
    for (int i = 0; same && i < p.n; i++) {
        size_t o = p.t[i].offset, n = p.t[i].numel;
        same = !memcmp(p.data + o, p2.data + o, n * 4) && !memcmp(mo + o, m2o + o, n * 4) &&
               !memcmp(vo + o, v2o + o, n * 4);
    }
    check_true("params and moments bit-identical after load", same);
    rc = ag_ckpt_load(path, NULL, &p2, NULL, NULL);
    check_true("load params only, no config check", rc == 0);

    /* Save without optimizer state, then ask for moments. */
    char nopt[700];
    snprintf(nopt, sizeof nopt, "%s/no-optim.h5", dir);
    rc = ag_ckpt_write(nopt, &md, &ts, &p, NULL, NULL);
    check_true("write without moments", rc == 0);
    rc = ag_ckpt_load(nopt, &md, &p2, m2o, v2o);
    check_true("asking for missing moments is an error that says so", rc != 0 && strstr(ag_errmsg(), "no optimizer state"));
    printf("      -> %s\n", ag_errmsg());
    check_true("only one moment buffer refused", ag_ckpt_write(nopt, &md, &ts, &p, mo, NULL) != 0);

    /* h5py-style readability: plain HDF5 sees float32 datasets by HF name. */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int plain = f >= 0 && H5Lexists(f, "params/bert.encoder.layer.1.attention.self.query.weight", H5P_DEFAULT) > 0 &&
                H5Lexists(f, "optim/v/classifier.bias", H5P_DEFAULT) > 0 && H5Lexists(f, "tokenizer/vocab", H5P_DEFAULT) > 0;
    if (f >= 0) H5Fclose(f);
    check_true("layout: /params/<HF name>, /optim/v/<name>, /tokenizer/vocab", plain);

    free(mo); free(vo); free(m2o); free(v2o);
    ag_bert_free(&m); ag_bert_free(&m2);
    ag_params_free(&p); ag_params_free(&p2);
    ag_model_desc_free(&md);
}

static void test_mismatch(void) {
    char path[700];
    ag_ckpt_path(path, sizeof path, dir, 10);
    /* A model with another intermediate size: every FFN tensor misshapen, config differs. */
    ag_model_desc md;
    ag_bert m;
    ag_params p;
    tiny_desc(&md, 12);
    build(&md, &m, &p);
    int rc = ag_ckpt_load(path, &md, &p, NULL, NULL);
    const char *e = ag_errmsg();
    printf("      -> %s\n", e);
    check_true("intermediate_size mismatch refused", rc != 0);
    check_true("message names the file", strstr(e, "ckpt-000010.h5") != NULL);
    check_true("message lists the config field", strstr(e, "intermediate_size: want 12, got 16") != NULL);
    check_true("message lists layer 0 and layer 1 FFN shapes",
               strstr(e, "params/bert.encoder.layer.0.intermediate.dense.weight: shape [16, 8] in the file, the model "
                         "expects [12, 8]") &&
                   strstr(e, "bert.encoder.layer.1.output.dense.weight: shape [8, 16]"));
    ag_bert_free(&m);
    ag_params_free(&p);

    /* A table with a missing and an extra tensor (a bi-encoder-like table by hand). */
    ag_params q;
    ag_params_init(&q);
    ag_params_add(&q, "bert.embeddings.word_embeddings.weight", 2, (int64_t[]){12, 8});
    ag_params_add(&q, "bert.embeddings.made_up.weight", 1, (int64_t[]){8});
    ag_params_alloc(&q);
    rc = ag_ckpt_load(path, NULL, &q, NULL, NULL);
    e = ag_errmsg();
    printf("      -> %.300s...\n", e);
    check_true("tensor missing from the file listed",
               rc != 0 && strstr(e, "params/bert.embeddings.made_up.weight: missing from the file"));
    check_true("tensor in the file but not in the model listed",
               strstr(e, "params/bert.embeddings.LayerNorm.bias: in the file but not in the model") != NULL);
    check_true("long lists end with a count", strstr(e, "more)") != NULL || strstr(e, "pooler") != NULL);
    ag_params_free(&q);

    /* A float64 dataset where float32 belongs. */
    char p64[700];
    snprintf(p64, sizeof p64, "%s/f64.h5", dir);
    ag_model_desc_free(&md);
    tiny_desc(&md, 16);
    build(&md, &m, &p);
    ag_train_state ts;
    train_state(&ts, 1);
    ag_ckpt_write(p64, &md, &ts, &p, NULL, NULL);
    hid_t f = H5Fopen(p64, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(f, "params/classifier.bias", H5P_DEFAULT);
    hsize_t d3 = 3;
    hid_t sp = H5Screate_simple(1, &d3, NULL);
    hid_t ds = H5Dcreate2(f, "params/classifier.bias", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    double z[3] = {0};
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, z);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    rc = ag_ckpt_load(p64, &md, &p, NULL, NULL);
    printf("      -> %s\n", ag_errmsg());
    check_true("float64 dataset reported as a dtype mismatch",
               rc != 0 && strstr(ag_errmsg(), "params/classifier.bias: dtype is not float32"));
    ag_bert_free(&m);
    ag_params_free(&p);
    ag_model_desc_free(&md);
}

static void die_before_rename(const char *tmp) {
    (void)tmp;
    raise(SIGKILL);
}

static void test_kill_safety(void) {
    ag_model_desc md;
    ag_bert m;
    ag_params p;
    tiny_desc(&md, 16);
    build(&md, &m, &p);
    fill(p.data, p.total, 5);
    ag_train_state ts;
    train_state(&ts, 20);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        ag_ckpt_fault_hook = die_before_rename;
        ag_ckpt_save_dir(dir, 2, &md, &ts, &p, NULL, NULL);
        _exit(0);  /* not reached: the hook kills the process */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    check_true("writer was killed mid-checkpoint", WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    char tmp[800], final[700], latest[700], prev[700];
    ag_ckpt_path(final, sizeof final, dir, 20);
    snprintf(tmp, sizeof tmp, "%s.tmp", final);
    ag_ckpt_path(prev, sizeof prev, dir, 10);
    check_true("only the .tmp exists for step 20", file_exists(tmp) && !file_exists(final));
    /* Make the leftover look like a write cut short as well. */
    if (truncate(tmp, 100)) printf("  truncate failed\n");
    check_true("latest ignores the .tmp and returns step 10",
               ag_ckpt_latest(dir, latest, sizeof latest) == 1 && !strcmp(latest, prev));
    ag_bert m2;
    ag_params p2;
    build(&md, &m2, &p2);
    int rc = ag_ckpt_load(latest, &md, &p2, NULL, NULL);
    check_true("the previous checkpoint loads", rc == 0);

    /* The next successful save removes the stale .tmp. */
    train_state(&ts, 30);
    rc = ag_ckpt_save_dir(dir, 2, &md, &ts, &p, NULL, NULL);
    check_true("save step 30", rc == 0);
    check_true("stale .tmp cleaned up", !file_exists(tmp));
    rc = ag_ckpt_load(dir, &md, &p2, NULL, NULL);
    check_true("loading a directory is a clear error", rc != 0 && strstr(ag_errmsg(), "not a regular file"));

    /* Keep the newest two. */
    train_state(&ts, 40);
    ag_ckpt_save_dir(dir, 2, &md, &ts, &p, NULL, NULL);
    char c30[700], c40[700];
    ag_ckpt_path(c30, sizeof c30, dir, 30);
    ag_ckpt_path(c40, sizeof c40, dir, 40);
    check_true("keep=2: steps 30 and 40 remain, 10 pruned", file_exists(c30) && file_exists(c40) && !file_exists(prev));
    train_state(&ts, 1000000);  /* seven digits still sort after six */
    ag_ckpt_save_dir(dir, 2, &md, &ts, &p, NULL, NULL);
    check_true("step 1000000 is the newest", ag_ckpt_latest(dir, latest, sizeof latest) == 1 &&
                                               strstr(latest, "ckpt-1000000.h5") && !file_exists(c30));
    ag_bert_free(&m); ag_bert_free(&m2);
    ag_params_free(&p); ag_params_free(&p2);
    ag_model_desc_free(&md);
}

static void copy_prefix(const char *src, const char *dst, long bytes) {
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    for (long i = 0; i < bytes; i++) {
        int c = fgetc(a);
        if (c == EOF) break;
        fputc(c, b);
    }
    fclose(a);
    fclose(b);
}

static void test_corrupt(void) {
    char good[700], bad[700], latest[700];
    ag_ckpt_path(good, sizeof good, dir, 1000000);
    ag_ckpt_path(bad, sizeof bad, dir, 2000000);
    struct stat st;
    stat(good, &st);
    ag_model_desc md;
    ag_bert m;
    ag_params p;
    tiny_desc(&md, 16);
    build(&md, &m, &p);

    /* Newest checkpoint truncated (e.g. a copy cut short). */
    copy_prefix(good, bad, (long)st.st_size / 2);
    int rc = ag_ckpt_latest(dir, latest, sizeof latest);
    const char *e = ag_errmsg();
    printf("      -> %s\n", e);
    check_true("truncated newest: latest fails instead of silently skipping it", rc == -1);
    check_true("message names the broken file and the previous one",
               strstr(e, "ckpt-2000000.h5") && strstr(e, "ckpt-1000000.h5") && strstr(e, "truncated"));
    rc = ag_ckpt_load(bad, &md, &p, NULL, NULL);
    check_true("loading it directly: corrupt or truncated", rc != 0 && strstr(ag_errmsg(), "truncated"));
    printf("      -> %s\n", ag_errmsg());

    /* Garbage, empty, foreign HDF5. */
    FILE *f = fopen(bad, "wb");
    for (int i = 0; i < 5000; i++) fputc((i * 31) & 0xff, f);
    fclose(f);
    rc = ag_ckpt_load(bad, &md, &p, NULL, NULL);
    printf("      -> %s\n", ag_errmsg());
    check_true("garbage: not an HDF5 file", rc != 0 && strstr(ag_errmsg(), "not an HDF5 file"));
    fclose(fopen(bad, "wb"));
    rc = ag_ckpt_read_info(bad, &md, NULL, NULL);
    printf("      -> %s\n", ag_errmsg());
    check_true("empty file", rc != 0 && strstr(ag_errmsg(), "empty file"));
    hid_t h = H5Fcreate(bad, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(h);
    rc = ag_ckpt_load(bad, &md, &p, NULL, NULL);
    printf("      -> %s\n", ag_errmsg());
    check_true("HDF5 file that is not a checkpoint", rc != 0 && strstr(ag_errmsg(), "not an argent checkpoint"));
    unlink(bad);
    check_true("after removing it, latest is 1000000 again",
               ag_ckpt_latest(dir, latest, sizeof latest) == 1 && strstr(latest, "ckpt-1000000.h5"));
    char none[700];
    snprintf(none, sizeof none, "%s/never-created", dir);
    check_true("missing directory: 0 (fresh start)", ag_ckpt_latest(none, latest, sizeof latest) == 0);
    ag_bert_free(&m);
    ag_params_free(&p);
    ag_model_desc_free(&md);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s/tmp-test-checkpoint-%d", ARGENT_BUILD_DIR, (int)getpid());
    test_round_trip();
    test_mismatch();
    test_kill_safety();
    test_corrupt();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) printf("note: could not remove %s\n", dir);
    return check_finish();
}
