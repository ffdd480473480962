/* Hugging Face folders on synthetic tiny models (no downloads, runs everywhere): import of
 * bi-encoder and cross-encoder folders (old and new sentence-transformers pooling configs,
 * Normalize, names with and without "bert."), every rejection with its message (missing,
 * misshapen and unexpected tensors, unsupported activation, pooling and modules, vocab size),
 * export and re-import bit-exact, checkpoint round trip. Leaves OUT = build/hfmodel-tiny with
 * the exported folders and argent's own embeddings/scores in argent.json for
 * tests/parity/tiny_export_check.py, which loads them with SentenceTransformer/CrossEncoder. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/hfmodel.h"
#include "io/safetensors.h"
#include "io/tokenizer.h"
#include "nn/error.h"
#include "nn/rng.h"
#include "tests/support/check.h"

#define OUT ARGENT_BUILD_DIR "/hfmodel-tiny"
#define C_ 8
#define L_ 2
#define I_ 12
#define V_ 12
#define P_ 16

static const char *VOCAB = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncat\nsat\non\nmat\n##s\n.\n";

static void put(const char *dir, const char *name, const char *text) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    fputs(text, f);
    fclose(f);
}

static void config(const char *dir, const char *arch, const char *act, const char *extra) {
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"architectures\": [\"%s\"], \"model_type\": \"bert\", \"hidden_size\": %d, \"num_hidden_layers\": %d,"
             " \"num_attention_heads\": 2, \"intermediate_size\": %d, \"vocab_size\": %d,"
             " \"max_position_embeddings\": %d, \"type_vocab_size\": 2, \"layer_norm_eps\": 1e-12,"
             " \"hidden_act\": \"%s\", \"hidden_dropout_prob\": 0.1, \"attention_probs_dropout_prob\": 0.1%s}",
             arch, C_, L_, I_, V_, P_, act, extra);
    put(dir, "config.json", buf);
}

/* The tensor list of a tiny BERT under `prefix` (+ pooler, + classifier with nlab > 0),
 * values from the counter RNG. skip: a name to leave out; bad: a name to give shape [3]. */
static void weights(const char *dir, const char *prefix, int nlab, const char *skip, const char *bad, int extra) {
    ag_params p;
    ag_params_init(&p);
    ag_bert m;
    ag_bert_config cfg = {.vocab_size = V_, .hidden_size = C_, .num_hidden_layers = L_, .num_attention_heads = 2,
                          .intermediate_size = I_, .max_position_embeddings = P_, .type_vocab_size = 2,
                          .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f, .attention_probs_dropout_prob = 0.1f};
    ag_bert_register(&m, &cfg, &p, prefix, 1);
    if (nlab) {
        ag_params_add(&p, "classifier.weight", 2, (int64_t[]){nlab, C_});
        ag_params_add(&p, "classifier.bias", 1, (int64_t[]){nlab});
    }
    ag_params_alloc(&p);
    for (int i = 0; i < p.n; i++) {
        float *x = ag_params_data(&p, i);
        int ln = strstr(p.t[i].name, "LayerNorm.weight") != NULL;
        for (size_t k = 0; k < p.t[i].numel; k++)
            x[k] = (ln ? 1.0f : 0.0f) + 0.3f * ag_rng_normal(99, AG_RNG_INIT, (uint64_t)i, 0, k);
    }
    ag_st_entry *e = calloc((size_t)p.n + 2, sizeof *e);
    int n = 0;
    static const int64_t three[1] = {3}, four[1] = {4};
    static const float junk[4] = {1, 2, 3, 4};
    for (int i = 0; i < p.n; i++) {
        if (skip && !strcmp(p.t[i].name, skip)) continue;
        e[n] = (ag_st_entry){p.t[i].name, p.t[i].ndim, p.t[i].shape, ag_params_data(&p, i)};
        if (bad && !strcmp(p.t[i].name, bad)) { e[n].ndim = 1; e[n].shape = three; }
        n++;
    }
    if (extra) e[n++] = (ag_st_entry){"cls.predictions.bias", 1, four, junk};
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (ag_st_write(path, e, n, "pt")) printf("  write weights: %s\n", ag_errmsg());
    free(e);
    ag_bert_free(&m);
    ag_params_free(&p);
}

static void fresh(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    if (system(cmd)) printf("  cannot make %s\n", dir);
}

/* A sentence-transformers bi-encoder folder: old-style Pooling config (max), Normalize. */
static void bi_folder(const char *dir) {
    fresh(dir);
    config(dir, "BertModel", "gelu", "");
    weights(dir, "", 0, NULL, NULL, 1);
    put(dir, "vocab.txt", VOCAB);
    put(dir, "modules.json",
        "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},"
        "{\"idx\":1,\"name\":\"1\",\"path\":\"1_Pooling\",\"type\":\"sentence_transformers.models.Pooling\"},"
        "{\"idx\":2,\"name\":\"2\",\"path\":\"2_Normalize\",\"type\":\"sentence_transformers.models.Normalize\"}]");
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/1_Pooling", dir);
    mkdir(sub, 0755);
    put(sub, "config.json",
        "{\"word_embedding_dimension\": 8, \"pooling_mode_cls_token\": false, \"pooling_mode_mean_tokens\": false,"
        " \"pooling_mode_max_tokens\": true, \"pooling_mode_mean_sqrt_len_tokens\": false}");
    put(dir, "sentence_bert_config.json", "{\"max_seq_length\": 10, \"do_lower_case\": false}");
    put(dir, "tokenizer_config.json", "{\"do_lower_case\": true, \"model_max_length\": 512}");
}

static int import_err(const char *dir, const char *n1, const char *n2) {
    ag_model_desc md;
    ag_bert m;
    ag_params p;
    ag_model_desc_init(&md);
    int rc = ag_hf_import(dir, &md, &m, NULL, &p, NULL);
    if (rc == 0) { ag_bert_free(&m); ag_params_free(&p); }
    ag_model_desc_free(&md);
    const char *e = ag_errmsg();
    printf("      -> %s\n", e);
    return rc != 0 && (!n1 || strstr(e, n1)) && (!n2 || strstr(e, n2));
}

static int tensors_equal(const ag_params *a, const ag_params *b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++) {
        int j = ag_params_find(b, a->t[i].name);
        if (j < 0 || a->t[i].numel != b->t[j].numel ||
            memcmp(ag_params_data(a, i), ag_params_data(b, j), a->t[i].numel * sizeof(float)))
            return 0;
    }
    return 1;
}

static const char *texts[] = {"The cat sat.", "the mats", "cat on the mat", "Mat"};
#define NT 4

/* argent's embedding of each text with the imported pipeline -> JSON array. */
static json_t *embed(const ag_model_desc *md, ag_bert *m, const ag_params *p, const char *vocab) {
    ag_tokenizer *tk = ag_tokenizer_load(vocab, md->do_lower_case);
    json_t *arr = json_array();
    if (!tk) { printf("  tokenizer: %s\n", ag_errmsg()); return arr; }
    for (int i = 0; i < NT; i++) {
        int32_t *wp = NULL, ids[P_], types[P_], mask[P_];
        int n = 0, cap = 0;
        ag_tok_wordpieces(tk, texts[i], strlen(texts[i]), &wp, &n, &cap);
        int T = ag_tok_build_single(tk, wp, n, md->max_seq_length, ids, types);
        free(wp);
        for (int t = 0; t < T; t++) mask[t] = 1;
        ag_bert_batch in = {1, T, ids, types, mask, NULL};
        float out[C_];
        int32_t am[C_];
        if (ag_bert_forward(m, p, &in, 0, 0, 0)) { printf("  forward: %s\n", ag_errmsg()); break; }
        ag_pool_forward(md->pooling, ag_bert_hidden(m), mask, 1, T, C_, out, am);
        if (md->normalize) ag_l2norm_forward(out, 1, C_, out, NULL);
        json_t *v = json_array();
        for (int c = 0; c < C_; c++) json_array_append_new(v, json_real(out[c]));
        json_array_append_new(arr, v);
    }
    ag_tokenizer_free(tk);
    return arr;
}

static json_t *score(const ag_model_desc *md, ag_bert *m, const ag_xhead *h, const ag_params *p, const char *vocab) {
    ag_tokenizer *tk = ag_tokenizer_load(vocab, md->do_lower_case);
    json_t *arr = json_array();
    if (!tk) return arr;
    for (int i = 0; i + 1 < NT; i++) {
        int32_t *a = NULL, *b = NULL, ids[P_], types[P_], mask[P_];
        int na = 0, ca = 0, nb = 0, cb = 0;
        ag_tok_wordpieces(tk, texts[i], strlen(texts[i]), &a, &na, &ca);
        ag_tok_wordpieces(tk, texts[i + 1], strlen(texts[i + 1]), &b, &nb, &cb);
        int T = ag_tok_build_pair(tk, a, na, b, nb, md->max_seq_length < P_ ? md->max_seq_length : P_, ids, types);
        free(a);
        free(b);
        for (int t = 0; t < T; t++) mask[t] = 1;
        ag_bert_batch in = {1, T, ids, types, mask, NULL};
        float logits[AG_MAX_LABELS];
        if (ag_bert_forward(m, p, &in, 0, 0, 1) || ag_xhead_forward(h, p, ag_bert_pooled(m), 1, NULL, 0, 0, NULL, logits)) {
            printf("  forward: %s\n", ag_errmsg());
            break;
        }
        json_t *v = json_array();
        for (int k = 0; k < h->num_labels; k++) json_array_append_new(v, json_real(logits[k]));
        json_array_append_new(arr, v);
    }
    ag_tokenizer_free(tk);
    return arr;
}

static void test_bi(json_t *report) {
    char dir[512], exp[512], vocab[600];
    snprintf(dir, sizeof dir, "%s/bi", OUT);
    bi_folder(dir);
    ag_model_desc md;
    ag_bert m;
    ag_params p;
    char *notes = NULL;
    ag_model_desc_init(&md);
    int rc = ag_hf_import(dir, &md, &m, NULL, &p, &notes);
    if (rc) printf("  %s\n", ag_errmsg());
    check_true("import a sentence-transformers bi-encoder folder", rc == 0);
    if (rc) return;
    check_true("description: bi-encoder, sizes, max pooling, normalize, max_seq_length 10, lower case",
               md.kind == AG_MODEL_BI_ENCODER && md.hidden_size == C_ && md.num_hidden_layers == L_ &&
                   md.intermediate_size == I_ && md.vocab_size == V_ && md.pooling == AG_POOL_MAX && md.normalize &&
                   md.max_seq_length == 10 && md.do_lower_case == 1 && md.st_lower_case == 0 && md.has_pooler &&
                   md.vocab_len == strlen(VOCAB) && !strcmp(md.vocab, VOCAB));
    check_true("unexpected tensors are listed as notes",
               notes && strstr(notes, "cls.predictions.bias") && !strstr(notes, "pooler"));
    free(notes);

    /* Export, then import the export: same description, bit-identical tensors. */
    snprintf(exp, sizeof exp, "%s/export_st", OUT);
    rc = ag_hf_export(exp, AG_EXPORT_SENTENCE_TRANSFORMERS, &md, &p);
    if (rc) printf("  %s\n", ag_errmsg());
    check_true("export sentence-transformers folder", rc == 0);
    ag_model_desc md2;
    ag_bert m2;
    ag_params p2;
    ag_model_desc_init(&md2);
    rc = ag_hf_import(exp, &md2, &m2, NULL, &p2, &notes);
    check_true("re-import the export: no notes, same description, identical tensors",
               rc == 0 && notes == NULL && ag_model_desc_diff(&md, &md2) == 0 && md2.max_seq_length == 10 &&
                   md2.vocab_len == md.vocab_len && tensors_equal(&p, &p2));
    json_error_t je;
    char f[700];
    snprintf(f, sizeof f, "%s/modules.json", exp);
    json_t *mods = json_load_file(f, 0, &je);
    snprintf(f, sizeof f, "%s/1_Pooling/config.json", exp);
    json_t *pool = json_load_file(f, 0, &je);
    check_true("modules.json: Transformer, Pooling, Normalize; pooling config says max",
               json_array_size(mods) == 3 &&
                   !strcmp(json_string_value(json_object_get(json_array_get(mods, 2), "type")),
                           "sentence_transformers.models.Normalize") &&
                   json_is_true(json_object_get(pool, "pooling_mode_max_tokens")) &&
                   json_integer_value(json_object_get(pool, "word_embedding_dimension")) == C_);
    json_decref(mods);
    json_decref(pool);
    rc = ag_hf_export(exp, AG_EXPORT_CROSS_ENCODER, &md, &p);
    check_true("a bi-encoder refuses the cross-encoder format", rc != 0 && strstr(ag_errmsg(), "cross-encoder"));

    /* Checkpoint round trip through the model builder. */
    char ck[600];
    snprintf(ck, sizeof ck, "%s/bi.h5", OUT);
    ag_train_state ts;
    ag_train_state_init(&ts);
    rc = ag_ckpt_write(ck, &md, &ts, &p, NULL, NULL);
    ag_model_desc md3;
    ag_bert m3;
    ag_params p3;
    ag_model_desc_init(&md3);
    rc = rc ? rc : ag_ckpt_load_model(ck, &md3, &m3, NULL, &p3, NULL);
    if (rc) printf("  %s\n", ag_errmsg());
    check_true("checkpoint of the import rebuilds the same model", rc == 0 && ag_model_desc_diff(&md, &md3) == 0 &&
                                                                     tensors_equal(&p, &p3));
    if (rc == 0) { ag_bert_free(&m3); ag_params_free(&p3); }
    ag_model_desc_free(&md3);

    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    json_object_set_new(report, "texts", json_array());
    for (int i = 0; i < NT; i++) json_array_append_new(json_object_get(report, "texts"), json_string(texts[i]));
    json_object_set_new(report, "embeddings", embed(&md, &m, &p, vocab));
    json_object_set_new(report, "export_st", json_string(exp));

    ag_model_desc_free(&md2);
    if (rc == 0) { ag_bert_free(&m2); ag_params_free(&p2); }
    ag_bert_free(&m);
    ag_params_free(&p);
    ag_model_desc_free(&md);
}

static void test_ce(json_t *report) {
    char dir[512], exp[512], vocab[600];
    snprintf(dir, sizeof dir, "%s/ce", OUT);
    fresh(dir);
    config(dir, "BertForSequenceClassification", "gelu",
           ", \"id2label\": {\"0\": \"contradiction\", \"1\": \"entailment\", \"2\": \"neutral\"},"
           " \"label2id\": {\"contradiction\": 0, \"entailment\": 1, \"neutral\": 2}");
    weights(dir, "bert.", 3, NULL, NULL, 0);
    put(dir, "vocab.txt", VOCAB);
    put(dir, "tokenizer_config.json", "{\"do_lower_case\": true, \"model_max_length\": 1000000000000000019884624838656}");
    ag_model_desc md;
    ag_bert m;
    ag_xhead h;
    ag_params p;
    ag_model_desc_init(&md);
    int rc = ag_hf_import(dir, &md, &m, &h, &p, NULL);
    if (rc) printf("  %s\n", ag_errmsg());
    check_true("import a BertForSequenceClassification folder", rc == 0);
    if (rc) return;
    check_true("cross-encoder: 3 labels with names, pooler, head registered, max length = positions",
               md.kind == AG_MODEL_CROSS_ENCODER && md.num_labels == 3 && !strcmp(md.id2label[1], "entailment") &&
                   md.has_pooler && h.num_labels == 3 && h.C == C_ && md.max_seq_length == P_ &&
                   ag_params_find(&p, "bert.encoder.layer.1.output.LayerNorm.bias") >= 0);
    snprintf(exp, sizeof exp, "%s/export_ce", OUT);
    rc = ag_hf_export(exp, AG_EXPORT_CROSS_ENCODER, &md, &p);
    if (rc) printf("  %s\n", ag_errmsg());
    check_true("export cross-encoder folder", rc == 0);
    ag_st_file f;
    char sp[700];
    snprintf(sp, sizeof sp, "%s/model.safetensors", exp);
    rc = ag_st_open(&f, sp);
    check_true("exported weights: bert.-prefixed encoder, classifier.*",
               rc == 0 && ag_st_find(&f, "bert.embeddings.word_embeddings.weight") >= 0 &&
                   ag_st_find(&f, "classifier.weight") >= 0 && ag_st_find(&f, "bert.pooler.dense.bias") >= 0 &&
                   ag_st_find(&f, "embeddings.word_embeddings.weight") < 0);
    if (rc == 0) ag_st_close(&f);
    ag_model_desc md2;
    ag_bert m2;
    ag_params p2;
    ag_model_desc_init(&md2);
    rc = ag_hf_import(exp, &md2, &m2, NULL, &p2, NULL);
    check_true("re-import: same description and tensors", rc == 0 && ag_model_desc_diff(&md, &md2) == 0 &&
                                                             !strcmp(md2.id2label[2], "neutral") && tensors_equal(&p, &p2));
    if (rc == 0) { ag_bert_free(&m2); ag_params_free(&p2); }
    ag_model_desc_free(&md2);
    rc = ag_hf_export(exp, AG_EXPORT_SENTENCE_TRANSFORMERS, &md, &p);
    check_true("a cross-encoder refuses the sentence-transformers format", rc != 0);

    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    json_object_set_new(report, "ce_logits", score(&md, &m, &h, &p, vocab));
    json_object_set_new(report, "export_ce", json_string(exp));
    ag_bert_free(&m);
    ag_params_free(&p);
    ag_model_desc_free(&md);
}

static void test_rejections(void) {
    char dir[512], sub[600];
    snprintf(dir, sizeof dir, "%s/bad", OUT);

    bi_folder(dir);
    weights(dir, "bert.", 0, "bert.encoder.layer.1.attention.self.key.bias", "bert.embeddings.LayerNorm.weight", 0);
    check_true("missing and misshapen tensors listed together (names with bert. prefix accepted)",
               import_err(dir, "encoder.layer.1.attention.self.key.bias: missing from the file",
                          "bert.embeddings.LayerNorm.weight: shape [3] in the file, the model expects [8]"));

    bi_folder(dir);
    config(dir, "BertModel", "gelu_new", "");
    check_true("hidden_act gelu_new refused, naming config.json", import_err(dir, "config.json", "gelu_new"));

    bi_folder(dir);
    config(dir, "BertModel", "gelu", ", \"position_embedding_type\": \"relative_key\"");
    check_true("relative position embeddings refused", import_err(dir, "position_embedding_type", "relative_key"));

    bi_folder(dir);
    put(dir, "config.json", "{\"model_type\": \"bert\", \"hidden_size\": 8,");
    check_true("broken config.json: invalid JSON with line/column", import_err(dir, "config.json", "invalid JSON"));

    bi_folder(dir);
    put(dir, "config.json", "{\"model_type\": \"bert\", \"hidden_size\": 8}");
    check_true("config.json without num_hidden_layers", import_err(dir, "config.json", "num_hidden_layers"));

    bi_folder(dir);
    config(dir, "RobertaModel", "gelu", "");
    check_true("non-BERT architecture refused", import_err(dir, "RobertaModel", NULL));

    bi_folder(dir);
    snprintf(sub, sizeof sub, "%s/1_Pooling", dir);
    put(sub, "config.json", "{\"embedding_dimension\": 8, \"pooling_mode\": \"lasttoken\"}");
    check_true("new-style pooling_mode lasttoken refused", import_err(dir, "pooling_mode", "lasttoken"));

    bi_folder(dir);
    put(sub, "config.json", "{\"embedding_dimension\": 8, \"pooling_mode\": \"cls\"}");
    ag_model_desc md;
    ag_model_desc_init(&md);
    int rc = ag_hf_read_desc(dir, &md);
    check_true("new-style pooling_mode cls read", rc == 0 && md.pooling == AG_POOL_CLS);
    ag_model_desc_free(&md);

    bi_folder(dir);
    put(sub, "config.json", "{\"word_embedding_dimension\": 8, \"pooling_mode_cls_token\": true, \"pooling_mode_mean_tokens\": true}");
    check_true("two pooling modes at once refused", import_err(dir, "exactly one pooling mode", NULL));

    bi_folder(dir);
    put(sub, "config.json", "{\"word_embedding_dimension\": 16, \"pooling_mode_mean_tokens\": true}");
    check_true("pooling dimension != hidden_size refused", import_err(dir, "pooling dimension 16", NULL));

    bi_folder(dir);
    put(dir, "modules.json",
        "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},"
        "{\"idx\":1,\"name\":\"1\",\"path\":\"1_Pooling\",\"type\":\"sentence_transformers.models.Pooling\"},"
        "{\"idx\":2,\"name\":\"2\",\"path\":\"2_Dense\",\"type\":\"sentence_transformers.models.Dense\"}]");
    check_true("a Dense module refused, named", import_err(dir, "sentence_transformers.models.Dense", "modules.json"));

    bi_folder(dir);
    put(dir, "vocab.txt", "[PAD]\n[UNK]\n");
    check_true("vocab.txt size != vocab_size refused", import_err(dir, "vocab.txt", "2 tokens but config.json has vocab_size 12"));

    bi_folder(dir);
    put(dir, "sentence_bert_config.json", "{\"max_seq_length\": 999}");
    check_true("max_seq_length beyond positions refused", import_err(dir, "max_seq_length 999", NULL));

    bi_folder(dir);
    snprintf(sub, sizeof sub, "%s/model.safetensors", dir);
    unlink(sub);
    put(dir, "pytorch_model.bin", "pickle");
    check_true("only pytorch_model.bin: says how to convert", import_err(dir, "pytorch_model.bin", "save_file"));

    bi_folder(dir);
    FILE *f = fopen(sub, "r+b");
    fputc(0xff, f);
    fputc(0xff, f);
    fputc(0xff, f);
    fclose(f);
    check_true("corrupt model.safetensors reported by the reader", import_err(dir, "model.safetensors", "header length"));

    snprintf(sub, sizeof sub, "%s/missing", OUT);
    check_true("not a directory", import_err(sub, "not a directory", NULL));

    ag_model_desc_init(&md);
    ag_params p;
    ag_params_init(&p);
    ag_params_add(&p, "embeddings.word_embeddings.weight", 2, (int64_t[]){V_, C_});
    ag_params_alloc(&p);
    snprintf(sub, sizeof sub, "%s/novocab", OUT);
    md.hidden_size = C_; md.vocab_size = V_; md.num_attention_heads = 2;
    rc = ag_hf_export(sub, AG_EXPORT_SENTENCE_TRANSFORMERS, &md, &p);
    check_true("export without vocab refused", rc != 0 && strstr(ag_errmsg(), "vocab"));
    ag_params_free(&p);
}

/* A TSDAE checkpoint: encoder tensors plus decoder-only ones. Loading it as a model gives
 * the encoder alone, which exports as a sentence-transformers folder. */
static void test_tsdae(void) {
    ag_model_desc md;
    ag_model_desc_init(&md);
    md.kind = AG_MODEL_TSDAE;
    md.vocab_size = V_; md.hidden_size = C_; md.num_hidden_layers = L_; md.num_attention_heads = 2;
    md.intermediate_size = I_; md.max_position_embeddings = P_; md.max_seq_length = P_;
    md.pooling = AG_POOL_CLS;
    md.vocab = strdup(VOCAB);
    md.vocab_len = strlen(VOCAB);
    ag_bert_config cfg;
    ag_model_desc_bert(&md, &cfg);
    ag_bert m;
    ag_params p;
    ag_params_init(&p);
    ag_bert_register(&m, &cfg, &p, "", 0);
    ag_params_add(&p, "decoder.layer.0.crossattention.self.query.weight", 2, (int64_t[]){C_, C_});
    ag_params_alloc(&p);
    for (size_t k = 0; k < p.total; k++) p.data[k] = (float)(k % 13) * 0.01f;
    char ck[600], exp[600];
    snprintf(ck, sizeof ck, "%s/tsdae.h5", OUT);
    snprintf(exp, sizeof exp, "%s/export_tsdae", OUT);
    ag_train_state ts;
    ag_train_state_init(&ts);
    int rc = ag_ckpt_write(ck, &md, &ts, &p, NULL, NULL);
    ag_model_desc got;
    ag_bert m2;
    ag_params p2;
    ag_model_desc_init(&got);
    rc = rc ? rc : ag_ckpt_load_model(ck, &got, &m2, NULL, &p2, NULL);
    if (rc) printf("  %s\n", ag_errmsg());
    check_true("TSDAE checkpoint loads its encoder only", rc == 0 && got.kind == AG_MODEL_TSDAE && p2.n == p.n - 1 &&
                                                          ag_params_find(&p2, "encoder.layer.1.output.dense.weight") >= 0);
    if (rc == 0) {
        rc = ag_hf_export(exp, AG_EXPORT_SENTENCE_TRANSFORMERS, &got, &p2);
        if (rc) printf("  %s\n", ag_errmsg());
        int eq = 1;
        for (int i = 0; i < p2.n && eq; i++) {
            int j = ag_params_find(&p, p2.t[i].name);
            eq = j >= 0 && !memcmp(ag_params_data(&p, j), ag_params_data(&p2, i), p2.t[i].numel * 4);
        }
        check_true("its encoder tensors are the saved ones, and export as sentence-transformers", rc == 0 && eq);
        ag_bert_free(&m2);
        ag_params_free(&p2);
    }
    ag_model_desc_free(&got);
    ag_bert_free(&m);
    ag_params_free(&p);
    ag_model_desc_free(&md);
}

int main(void) {
    fresh(OUT);
    json_t *report = json_object();
    test_bi(report);
    test_ce(report);
    test_rejections();
    test_tsdae();
    if (json_dump_file(report, OUT "/argent.json", JSON_INDENT(1) | JSON_REAL_PRECISION(9)))
        check_true("write argent.json", 0);
    json_decref(report);
    return check_finish();
}
