/* Hugging Face / sentence-transformers folders: import into a description + parameter
 * table, export back out; see hfmodel.h for what is read and written. */
#include "io/hfmodel.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/safetensors.h"
#include "nn/error.h"

#define PATH_CAP 4096

/* ---- small helpers ---- */

/* Growable message text for "every mismatch listed" errors. Lines beyond a budget that fits
 * ag_err's buffer are counted instead of printed. */
typedef struct { char *s; size_t len, cap; int lines, dropped; } strbuf;

static void sb_addf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_addf(strbuf *b, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    if (b->len + n + 2 > 1600) { b->dropped++; return; }
    if (b->len + n + 2 > b->cap) {
        size_t nc = b->cap ? 2 * b->cap : 1024;
        while (nc < b->len + n + 2) nc *= 2;
        char *s = realloc(b->s, nc);
        if (!s) { b->dropped++; return; }
        b->s = s;
        b->cap = nc;
    }
    memcpy(b->s + b->len, line, n);
    b->len += n;
    b->s[b->len++] = '\n';
    b->s[b->len] = 0;
    b->lines++;
}

/* Finish: "(and N more)" when lines were dropped; strips the last newline. */
static const char *sb_str(strbuf *b) {
    if (b->dropped) {
        int d = b->dropped;
        b->dropped = 0;
        char more[64];
        snprintf(more, sizeof more, "(and %d more)", d);
        size_t n = strlen(more);
        char *s = realloc(b->s, b->len + n + 2);
        if (s) { b->s = s; memcpy(b->s + b->len, more, n + 1); b->len += n; b->cap = b->len + 1; }
    } else if (b->len && b->s[b->len - 1] == '\n') {
        b->s[--b->len] = 0;
    }
    return b->s ? b->s : "";
}

static int path_join(char *out, size_t cap, const char *dir, const char *name) {
    int k = (name && name[0]) ? snprintf(out, cap, "%s/%s", dir, name) : snprintf(out, cap, "%s", dir);
    if (k < 0 || (size_t)k >= cap) return ag_err("%s/%s: path too long", dir, name ? name : "");
    return 0;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Whole file into a NUL-terminated buffer. */
static int read_text(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return ag_err("%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) { fclose(f); return ag_err("%s: out of memory", path); }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) { free(buf); fclose(f); return ag_err("%s: out of memory", path); }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return ag_err("%s: read error", path); }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

static json_t *load_json(const char *path) {
    json_error_t je;
    /* Integers as reals: Hugging Face writes "no limit" as 1000000000000000019884624838656,
     * which overflows jansson's integers. get_int accepts integral reals. */
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &je);
    if (!j) ag_err("%s: invalid JSON at line %d column %d: %s", path, je.line, je.column, je.text);
    return j;
}

/* Integer field: required, or defaulted when absent (def_ok). Accepts 3.0 but not 3.5. */
static int get_int(const char *path, json_t *o, const char *key, int *out, int def_ok, int def) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (def_ok) { *out = def; return 0; }
        return ag_err("%s: missing \"%s\" (an integer)", path, key);
    }
    double d = json_number_value(v);
    if (!json_is_number(v) || d != floor(d) || fabs(d) > 2e9)
        return ag_err("%s: \"%s\" must be an integer", path, key);
    *out = (int)d;
    return 0;
}

static int get_num(const char *path, json_t *o, const char *key, double *out, double def) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) { *out = def; return 0; }
    if (!json_is_number(v)) return ag_err("%s: \"%s\" must be a number", path, key);
    *out = json_number_value(v);
    return 0;
}

static int get_bool(const char *path, json_t *o, const char *key, int *out, int def) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) { *out = def; return 0; }
    if (!json_is_boolean(v)) return ag_err("%s: \"%s\" must be true or false", path, key);
    *out = json_is_true(v);
    return 0;
}

static const char *canon(const char *name) {
    return strncmp(name, "bert.", 5) == 0 ? name + 5 : name;
}

/* ---- description ---- */

void ag_model_desc_init(ag_model_desc *md) {
    memset(md, 0, sizeof *md);
    md->vocab_size = 30522;
    md->hidden_size = 768;
    md->num_hidden_layers = 12;
    md->num_attention_heads = 12;
    md->intermediate_size = 3072;
    md->max_position_embeddings = 512;
    md->type_vocab_size = 2;
    md->pad_token_id = 0;
    md->layer_norm_eps = 1e-12;
    md->hidden_dropout_prob = 0.1;
    md->attention_probs_dropout_prob = 0.1;
    md->initializer_range = 0.02;
    snprintf(md->hidden_act, sizeof md->hidden_act, "gelu");
    snprintf(md->architecture, sizeof md->architecture, "BertModel");
    md->kind = AG_MODEL_BI_ENCODER;
    md->num_labels = 1;
    snprintf(md->id2label[0], AG_LABEL_MAX, "LABEL_0");
    md->pooling = AG_POOL_MEAN;
    md->max_seq_length = 512;
    md->do_lower_case = 1;
}

void ag_model_desc_free(ag_model_desc *md) {
    free(md->vocab);
    md->vocab = NULL;
    md->vocab_len = 0;
}

int ag_model_desc_copy(ag_model_desc *dst, const ag_model_desc *src) {
    *dst = *src;
    dst->vocab = NULL;
    if (src->vocab) {
        dst->vocab = malloc(src->vocab_len + 1);
        if (!dst->vocab) return ag_err("out of memory copying a %zu-byte vocab", src->vocab_len);
        memcpy(dst->vocab, src->vocab, src->vocab_len);
        dst->vocab[src->vocab_len] = 0;
    }
    return 0;
}

static const char *kind_names[] = {"bi-encoder", "cross-encoder", "tsdae"};

const char *ag_model_kind_name(ag_model_kind k) {
    return (unsigned)k < 3 ? kind_names[k] : "?";
}

int ag_model_kind_parse(const char *s, ag_model_kind *k) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, kind_names[i])) { *k = (ag_model_kind)i; return 0; }
    return ag_err("model kind '%s': expected bi-encoder, cross-encoder or tsdae", s);
}

int ag_model_desc_check(const ag_model_desc *md) {
    const struct { const char *n; int v; } pos[] = {
        {"vocab_size", md->vocab_size}, {"hidden_size", md->hidden_size},
        {"num_hidden_layers", md->num_hidden_layers}, {"num_attention_heads", md->num_attention_heads},
        {"intermediate_size", md->intermediate_size}, {"max_position_embeddings", md->max_position_embeddings},
        {"max_seq_length", md->max_seq_length},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0) return ag_err("model config: %s = %d, must be positive", pos[i].n, pos[i].v);
    if (md->type_vocab_size < 0) return ag_err("model config: type_vocab_size = %d, must be >= 0", md->type_vocab_size);
    if (md->hidden_size % md->num_attention_heads)
        return ag_err("model config: hidden_size %d is not a multiple of num_attention_heads %d", md->hidden_size,
                      md->num_attention_heads);
    if (strcmp(md->hidden_act, "gelu"))
        return ag_err("model config: hidden_act \"%s\" is not supported (argent implements exact \"gelu\")",
                      md->hidden_act);
    if (!(md->layer_norm_eps > 0)) return ag_err("model config: layer_norm_eps must be positive");
    if (md->max_seq_length > md->max_position_embeddings)
        return ag_err("model config: max_seq_length %d exceeds max_position_embeddings %d", md->max_seq_length,
                      md->max_position_embeddings);
    if ((unsigned)md->kind > AG_MODEL_TSDAE) return ag_err("model config: unknown model kind %d", (int)md->kind);
    if (md->kind == AG_MODEL_CROSS_ENCODER && (md->num_labels < 1 || md->num_labels > AG_MAX_LABELS))
        return ag_err("model config: num_labels %d outside 1..%d", md->num_labels, AG_MAX_LABELS);
    if ((unsigned)md->pooling > AG_POOL_MAX) return ag_err("model config: unknown pooling mode %d", (int)md->pooling);
    return 0;
}

void ag_model_desc_bert(const ag_model_desc *md, ag_bert_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->vocab_size = md->vocab_size;
    cfg->hidden_size = md->hidden_size;
    cfg->num_hidden_layers = md->num_hidden_layers;
    cfg->num_attention_heads = md->num_attention_heads;
    cfg->intermediate_size = md->intermediate_size;
    cfg->max_position_embeddings = md->max_position_embeddings;
    cfg->type_vocab_size = md->type_vocab_size;
    cfg->layer_norm_eps = (float)md->layer_norm_eps;
    cfg->hidden_dropout_prob = (float)md->hidden_dropout_prob;
    cfg->attention_probs_dropout_prob = (float)md->attention_probs_dropout_prob;
}

int ag_model_desc_diff(const ag_model_desc *w, const ag_model_desc *g) {
    strbuf b = {0};
#define DI(f) if (w->f != g->f) sb_addf(&b, "  " #f ": want %d, got %d", (int)w->f, (int)g->f)
#define DD(f) if (w->f != g->f) sb_addf(&b, "  " #f ": want %g, got %g", w->f, g->f)
    if (w->kind != g->kind)
        sb_addf(&b, "  model kind: want %s, got %s", ag_model_kind_name(w->kind), ag_model_kind_name(g->kind));
    DI(vocab_size); DI(hidden_size); DI(num_hidden_layers); DI(num_attention_heads); DI(intermediate_size);
    DI(max_position_embeddings); DI(type_vocab_size); DD(layer_norm_eps);
    if (strcmp(w->hidden_act, g->hidden_act))
        sb_addf(&b, "  hidden_act: want %s, got %s", w->hidden_act, g->hidden_act);
    DI(has_pooler);
    if (w->kind == AG_MODEL_CROSS_ENCODER) DI(num_labels);
    if (w->kind != AG_MODEL_CROSS_ENCODER && w->pooling != g->pooling)
        sb_addf(&b, "  pooling: want %s, got %s", ag_pool_mode_name(w->pooling), ag_pool_mode_name(g->pooling));
    if (w->kind != AG_MODEL_CROSS_ENCODER) DI(normalize);
#undef DI
#undef DD
    if (!b.lines && !b.dropped) return 0;
    ag_err("model config differs:\n%s", sb_str(&b));
    free(b.s);
    return -1;
}

int ag_export_format_parse(const char *s, ag_export_format *f) {
    if (!strcmp(s, "sentence-transformers")) { *f = AG_EXPORT_SENTENCE_TRANSFORMERS; return 0; }
    if (!strcmp(s, "cross-encoder")) { *f = AG_EXPORT_CROSS_ENCODER; return 0; }
    return ag_err("export format '%s': expected sentence-transformers or cross-encoder", s);
}

/* ---- registration ---- */

int ag_model_register(const ag_model_desc *md, ag_bert *m, ag_params *p, ag_xhead *head) {
    if (ag_model_desc_check(md)) return -1;
    if (md->kind == AG_MODEL_TSDAE)
        return ag_err("model kind tsdae: the TSDAE job registers its own encoder and decoder");
    ag_bert_config cfg;
    ag_model_desc_bert(md, &cfg);
    int ce = md->kind == AG_MODEL_CROSS_ENCODER;
    memset(m, 0, sizeof *m);
    if (ag_bert_register(m, &cfg, p, ce ? "bert." : "", ce || md->has_pooler)) return -1;
    if (ce) {
        ag_xhead local;
        if (ag_xhead_register(head ? head : &local, p, md->hidden_size, md->num_labels,
                              (float)md->hidden_dropout_prob))
            return -1;
    }
    return 0;
}

/* ---- reading a folder ---- */

/* Last component of a dotted type name: "sentence_transformers.models.Pooling" -> "Pooling". */
static const char *type_tail(const char *t) {
    const char *d = strrchr(t, '.');
    return d ? d + 1 : t;
}

static int read_pooling(const char *path, ag_model_desc *md) {
    json_t *j = load_json(path);
    if (!j) return -1;
    int rc = 0;
    if (!json_is_object(j)) { rc = ag_err("%s: not a JSON object", path); goto out; }
    int dim = 0;
    if (json_object_get(j, "word_embedding_dimension")) rc = get_int(path, j, "word_embedding_dimension", &dim, 0, 0);
    else if (json_object_get(j, "embedding_dimension")) rc = get_int(path, j, "embedding_dimension", &dim, 0, 0);
    if (rc) goto out;
    if (dim && dim != md->hidden_size) {
        rc = ag_err("%s: pooling dimension %d differs from the model's hidden_size %d", path, dim, md->hidden_size);
        goto out;
    }
    json_t *mode = json_object_get(j, "pooling_mode");
    if (json_is_string(mode)) {  /* newer sentence-transformers */
        if (ag_pool_mode_parse(json_string_value(mode), &md->pooling)) {
            rc = ag_err("%s: pooling_mode \"%s\" is not supported (argent has cls, mean and max)", path,
                        json_string_value(mode));
        }
        goto out;
    }
    static const struct { const char *key; int mode; } keys[] = {
        {"pooling_mode_cls_token", AG_POOL_CLS}, {"pooling_mode_mean_tokens", AG_POOL_MEAN},
        {"pooling_mode_max_tokens", AG_POOL_MAX}, {"pooling_mode_mean_sqrt_len_tokens", -1},
        {"pooling_mode_weightedmean_tokens", -1}, {"pooling_mode_lasttoken", -1},
    };
    int on = 0;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        int v = 0;
        if ((rc = get_bool(path, j, keys[k].key, &v, 0))) goto out;
        if (!v) continue;
        if (keys[k].mode < 0) { rc = ag_err("%s: %s is not supported (argent has cls, mean and max)", path, keys[k].key); goto out; }
        md->pooling = (ag_pool_mode)keys[k].mode;
        on++;
    }
    if (on != 1)
        rc = ag_err("%s: exactly one pooling mode must be true (found %d; argent does not concatenate modes)", path, on);
out:
    json_decref(j);
    return rc;
}

/* modules.json: Transformer [, Pooling] [, Normalize]. Sets *tdir to the transformer's
 * folder (the model folder itself, or a subfolder as in some older models). */
static int read_modules(const char *dir, const char *path, ag_model_desc *md, char *tdir, size_t tcap,
                        char *pool_cfg, size_t pcap) {
    json_t *j = load_json(path);
    if (!j) return -1;
    int rc = 0, have_t = 0, have_p = 0;
    if (!json_is_array(j)) { rc = ag_err("%s: expected a JSON array of modules", path); goto out; }
    size_t i;
    json_t *mod;
    json_array_foreach(j, i, mod) {
        json_t *jt = json_object_get(mod, "type"), *jp = json_object_get(mod, "path");
        if (!json_is_string(jt) || (jp && !json_is_string(jp))) {
            rc = ag_err("%s: module %zu lacks a string \"type\" or \"path\"", path, i);
            goto out;
        }
        const char *type = json_string_value(jt), *tail = type_tail(type), *sub = jp ? json_string_value(jp) : "";
        if (!strcmp(tail, "Transformer") && i == 0) {
            if ((rc = path_join(tdir, tcap, dir, sub))) goto out;
            have_t = 1;
        } else if (!strcmp(tail, "Pooling") && have_t && !have_p) {
            /* Read after config.json, whose hidden_size the pooling dimension must match. */
            char pd[PATH_CAP];
            if ((rc = path_join(pd, sizeof pd, dir, sub)) || (rc = path_join(pool_cfg, pcap, pd, "config.json"))) goto out;
            have_p = 1;
        } else if (!strcmp(tail, "Normalize") && have_p) {
            md->normalize = 1;
        } else {
            rc = ag_err("%s: module %zu of type %s is not supported here (argent reads Transformer, then Pooling, "
                        "then an optional Normalize)", path, i, type);
            goto out;
        }
    }
    if (!have_t) rc = ag_err("%s: no Transformer module", path);
out:
    json_decref(j);
    return rc;
}

static int read_config(const char *path, ag_model_desc *md) {
    json_t *j = load_json(path);
    if (!j) return -1;
    int rc = -1;
    if (!json_is_object(j)) { ag_err("%s: not a JSON object", path); goto out; }
    json_t *mt = json_object_get(j, "model_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "bert"))) {
        ag_err("%s: model_type %s is not supported (argent reads BERT models: \"bert\")", path,
               json_is_string(mt) ? json_string_value(mt) : "(not a string)");
        goto out;
    }
    if (get_int(path, j, "hidden_size", &md->hidden_size, 0, 0) ||
        get_int(path, j, "num_hidden_layers", &md->num_hidden_layers, 0, 0) ||
        get_int(path, j, "num_attention_heads", &md->num_attention_heads, 0, 0) ||
        get_int(path, j, "intermediate_size", &md->intermediate_size, 0, 0) ||
        get_int(path, j, "vocab_size", &md->vocab_size, 0, 0) ||
        /* The rest default as BertConfig does. */
        get_int(path, j, "max_position_embeddings", &md->max_position_embeddings, 1, 512) ||
        get_int(path, j, "type_vocab_size", &md->type_vocab_size, 1, 2) ||
        get_int(path, j, "pad_token_id", &md->pad_token_id, 1, 0) ||
        get_num(path, j, "layer_norm_eps", &md->layer_norm_eps, 1e-12) ||
        get_num(path, j, "hidden_dropout_prob", &md->hidden_dropout_prob, 0.1) ||
        get_num(path, j, "attention_probs_dropout_prob", &md->attention_probs_dropout_prob, 0.1) ||
        get_num(path, j, "initializer_range", &md->initializer_range, 0.02))
        goto out;
    json_t *act = json_object_get(j, "hidden_act");
    if (act && !json_is_string(act)) { ag_err("%s: \"hidden_act\" must be a string", path); goto out; }
    snprintf(md->hidden_act, sizeof md->hidden_act, "%s", act ? json_string_value(act) : "gelu");
    if (strcmp(md->hidden_act, "gelu")) {
        ag_err("%s: hidden_act \"%s\" is not supported (argent implements exact erf \"gelu\")", path, md->hidden_act);
        goto out;
    }
    json_t *pe = json_object_get(j, "position_embedding_type");
    if (pe && json_is_string(pe) && strcmp(json_string_value(pe), "absolute")) {
        ag_err("%s: position_embedding_type \"%s\" is not supported (only \"absolute\")", path, json_string_value(pe));
        goto out;
    }
    json_t *arch = json_object_get(j, "architectures");
    if (json_is_array(arch) && json_array_size(arch) > 0) {
        json_t *a0 = json_array_get(arch, 0);
        if (!json_is_string(a0)) { ag_err("%s: architectures[0] is not a string", path); goto out; }
        snprintf(md->architecture, sizeof md->architecture, "%s", json_string_value(a0));
    }
    const char *a = md->architecture;
    size_t al = strlen(a), sl = strlen("ForSequenceClassification");
    if (strncmp(a, "Bert", 4)) {
        ag_err("%s: architecture %s is not a BERT model", path, a);
        goto out;
    }
    md->kind = (al > sl && !strcmp(a + al - sl, "ForSequenceClassification")) ? AG_MODEL_CROSS_ENCODER
                                                                              : AG_MODEL_BI_ENCODER;
    /* Labels: id2label decides num_labels, as in PretrainedConfig; else num_labels; else 2. */
    json_t *il = json_object_get(j, "id2label");
    int nl = 2;
    if (json_is_object(il) && json_object_size(il) > 0) {
        nl = (int)json_object_size(il);
    } else if (get_int(path, j, "num_labels", &nl, 1, 2)) {
        goto out;
    }
    if (nl < 1 || nl > AG_MAX_LABELS) { ag_err("%s: %d labels (argent supports 1..%d)", path, nl, AG_MAX_LABELS); goto out; }
    md->num_labels = nl;
    for (int k = 0; k < nl; k++) {
        char key[16];
        snprintf(key, sizeof key, "%d", k);
        json_t *lab = json_is_object(il) ? json_object_get(il, key) : NULL;
        if (json_is_object(il) && json_object_size(il) > 0 && !json_is_string(lab)) {
            ag_err("%s: id2label has no string label for id \"%d\"", path, k);
            goto out;
        }
        snprintf(md->id2label[k], AG_LABEL_MAX, "%s", lab ? json_string_value(lab) : "");
        if (!lab) snprintf(md->id2label[k], AG_LABEL_MAX, "LABEL_%d", k);
    }
    rc = 0;
out:
    json_decref(j);
    return rc;
}

/* Resolve the folder holding config.json / model.safetensors / vocab.txt, reading
 * modules.json on the way. */
static int read_desc(const char *dir, ag_model_desc *md, char *tdir, size_t tcap) {
    char p[PATH_CAP];
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return ag_err("%s: not a directory", dir);
    ag_model_desc_free(md);
    ag_model_desc_init(md);
    md->num_labels = 2;
    char pool_cfg[PATH_CAP] = "";
    if (path_join(tdir, tcap, dir, NULL) || path_join(p, sizeof p, dir, "modules.json")) return -1;
    int have_modules = file_exists(p);
    if (have_modules && read_modules(dir, p, md, tdir, tcap, pool_cfg, sizeof pool_cfg)) return -1;
    if (path_join(p, sizeof p, tdir, "config.json")) return -1;
    if (!file_exists(p)) return ag_err("%s: missing (a Hugging Face model folder needs config.json)", p);
    if (read_config(p, md)) return -1;
    if (pool_cfg[0] && read_pooling(pool_cfg, md)) return -1;

    /* Tokenizer settings. */
    int model_max = 0;
    if (path_join(p, sizeof p, tdir, "tokenizer_config.json")) return -1;
    if (file_exists(p)) {
        json_t *j = load_json(p);
        if (!j) return -1;
        int rc = get_bool(p, j, "do_lower_case", &md->do_lower_case, 1);
        json_t *mm = json_object_get(j, "model_max_length");
        /* Often 1e30 ("no limit"): only a value within the position table counts. */
        if (!rc && json_is_number(mm) && json_number_value(mm) >= 1 &&
            json_number_value(mm) <= md->max_position_embeddings)
            model_max = (int)json_number_value(mm);
        json_decref(j);
        if (rc) return -1;
    }
    md->max_seq_length = model_max ? model_max : md->max_position_embeddings;
    if (path_join(p, sizeof p, tdir, "sentence_bert_config.json")) return -1;
    if (file_exists(p)) {
        json_t *j = load_json(p);
        if (!j) return -1;
        int msl = 0;
        int rc = get_int(p, j, "max_seq_length", &msl, 1, 0) || get_bool(p, j, "do_lower_case", &md->st_lower_case, 0);
        json_decref(j);
        if (rc) return -1;
        if (msl) {
            if (msl < 1 || msl > md->max_position_embeddings)
                return ag_err("%s: max_seq_length %d outside 1..max_position_embeddings (%d)", p, msl,
                              md->max_position_embeddings);
            md->max_seq_length = msl;
        }
    }
    if (md->kind == AG_MODEL_CROSS_ENCODER) md->normalize = 0;

    if (path_join(p, sizeof p, tdir, "vocab.txt")) return -1;
    if (!file_exists(p)) return ag_err("%s: missing (argent's WordPiece tokenizer needs vocab.txt)", p);
    if (read_text(p, &md->vocab, &md->vocab_len)) return -1;
    /* The vocab must cover the embedding table's ids. */
    size_t lines = 0;
    for (size_t k = 0; k < md->vocab_len; k++) lines += md->vocab[k] == '\n';
    if (md->vocab_len && md->vocab[md->vocab_len - 1] != '\n') lines++;
    if (lines != (size_t)md->vocab_size)
        return ag_err("%s: %zu tokens but config.json has vocab_size %d", p, lines, md->vocab_size);
    return ag_model_desc_check(md);
}

int ag_hf_read_desc(const char *dir, ag_model_desc *md) {
    char tdir[PATH_CAP];
    return read_desc(dir, md, tdir, sizeof tdir);
}

int ag_hf_load_weights(const char *dir, const ag_params *p, char **notes) {
    if (notes) *notes = NULL;
    if (!p->data) return ag_err("ag_hf_load_weights: the parameter table is not allocated");
    char path[PATH_CAP];
    if (path_join(path, sizeof path, dir, "model.safetensors")) return -1;
    if (!file_exists(path)) {
        char alt[PATH_CAP];
        if (!path_join(alt, sizeof alt, dir, "pytorch_model.bin") && file_exists(alt))
            return ag_err("%s: missing; only pytorch_model.bin is there, which argent does not read (pickle). "
                          "Convert it: python -c \"import torch,safetensors.torch as s; "
                          "s.save_file(torch.load('pytorch_model.bin'), 'model.safetensors', {'format':'pt'})\"", path);
        return ag_err("%s: missing", path);
    }
    ag_st_file f;
    if (ag_st_open(&f, path)) return -1;
    int *match = malloc((size_t)(p->n ? p->n : 1) * sizeof *match);
    if (!match) { ag_st_close(&f); return ag_err("out of memory"); }
    for (int i = 0; i < p->n; i++) match[i] = -1;
    strbuf err = {0}, note = {0};
    for (int k = 0; k < f.n; k++) {
        const ag_st_tensor *t = &f.t[k];
        int hit = -1;
        for (int i = 0; i < p->n && hit < 0; i++)
            if (!strcmp(canon(p->t[i].name), canon(t->name))) hit = i;
        if (hit < 0) {
            sb_addf(&note, "unexpected tensor %s %s%s (not part of the model; skipped)", t->name,
                    ag_st_dtype_name(t->dtype), strstr(t->name, "position_ids") ? ", a buffer" : "");
            continue;
        }
        if (match[hit] >= 0) {
            sb_addf(&err, "  %s: given twice, as '%s' and '%s'", p->t[hit].name, f.t[match[hit]].name, t->name);
            continue;
        }
        match[hit] = k;
        const ag_tensor_info *ti = &p->t[hit];
        int same = ti->ndim == t->ndim;
        for (int d = 0; same && d < ti->ndim; d++) same = ti->shape[d] == t->shape[d];
        if (!same) {
            char ws[96] = "", gs[96] = "";
            for (int d = 0; d < ti->ndim; d++)
                snprintf(ws + strlen(ws), sizeof ws - strlen(ws), "%s%lld", d ? ", " : "", (long long)ti->shape[d]);
            for (int d = 0; d < t->ndim; d++)
                snprintf(gs + strlen(gs), sizeof gs - strlen(gs), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            sb_addf(&err, "  %s: shape [%s] in the file, the model expects [%s]", t->name, gs, ws);
            continue;
        }
        if (t->dtype != AG_ST_F32 && t->dtype != AG_ST_F16 && t->dtype != AG_ST_BF16) {
            sb_addf(&err, "  %s: dtype %s (expected F32, F16 or BF16)", t->name, ag_st_dtype_name(t->dtype));
            continue;
        }
    }
    for (int i = 0; i < p->n; i++)
        if (match[i] < 0) sb_addf(&err, "  %s: missing from the file", p->t[i].name);
    int rc = 0;
    if (err.lines || err.dropped) {
        rc = ag_err("%s: does not fit the model (%d tensors expected):\n%s", path, p->n, sb_str(&err));
    } else {
        for (int i = 0; i < p->n && !rc; i++)
            rc = ag_st_read_f32(&f, match[i], ag_params_data(p, i), p->t[i].numel);
        if (!rc && notes && (note.lines || note.dropped)) {
            sb_str(&note);
            *notes = note.s;
            note.s = NULL;
        }
    }
    free(err.s);
    free(note.s);
    free(match);
    ag_st_close(&f);
    return rc;
}

int ag_hf_import(const char *dir, ag_model_desc *md, ag_bert *m, ag_xhead *head, ag_params *p, char **notes) {
    char tdir[PATH_CAP], st[PATH_CAP];
    if (notes) *notes = NULL;
    memset(m, 0, sizeof *m);
    ag_params_init(p);
    if (read_desc(dir, md, tdir, sizeof tdir)) return -1;
    /* A bi-encoder keeps BERT's pooler when the file has one, so that an export is complete. */
    if (path_join(st, sizeof st, tdir, "model.safetensors")) return -1;
    md->has_pooler = md->kind == AG_MODEL_CROSS_ENCODER;
    if (file_exists(st)) {
        ag_st_file f;
        if (ag_st_open(&f, st)) return -1;
        md->has_pooler |= ag_st_find(&f, "pooler.dense.weight") >= 0 || ag_st_find(&f, "bert.pooler.dense.weight") >= 0;
        ag_st_close(&f);
    }
    if (ag_model_register(md, m, p, head)) goto fail;
    if (ag_params_alloc(p)) { ag_err("%s: out of memory for %zu parameters", dir, p->total); goto fail; }
    if (ag_hf_load_weights(tdir, p, notes)) goto fail;
    return 0;
fail:
    ag_bert_free(m);
    ag_params_free(p);
    return -1;
}

/* ---- export ---- */

static int mkdir_p(const char *dir) {
    char tmp[PATH_CAP];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) return ag_err("%s: path too long", dir);
    for (char *s = tmp + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(tmp, 0755) && errno != EEXIST) return ag_err("%s: cannot create directory: %s", tmp, strerror(errno));
        *s = '/';
    }
    if (mkdir(tmp, 0755) && errno != EEXIST) return ag_err("%s: cannot create directory: %s", tmp, strerror(errno));
    struct stat st;
    if (stat(tmp, &st) || !S_ISDIR(st.st_mode)) return ag_err("%s: exists and is not a directory", tmp);
    return 0;
}

/* Write JSON with 2-space indentation, keys in insertion order; takes the reference. */
static int dump_json(const char *dir, const char *name, json_t *j) {
    char p[PATH_CAP];
    if (!j) return ag_err("%s/%s: out of memory building JSON", dir, name);
    int rc = path_join(p, sizeof p, dir, name);
    /* 15 significant digits: 1e-12 and 0.1 come out as written in the source config. */
    if (!rc && json_dump_file(j, p, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15)))
        rc = ag_err("%s: cannot write: %s", p, strerror(errno));
    json_decref(j);
    return rc;
}

static json_t *bert_config_json(const ag_model_desc *md, int ce) {
    json_t *c = json_object();
    json_t *arch = json_array();
    json_array_append_new(arch, json_string(ce ? "BertForSequenceClassification" : "BertModel"));
    json_object_set_new(c, "architectures", arch);
    json_object_set_new(c, "attention_probs_dropout_prob", json_real(md->attention_probs_dropout_prob));
    json_object_set_new(c, "hidden_act", json_string(md->hidden_act));
    json_object_set_new(c, "hidden_dropout_prob", json_real(md->hidden_dropout_prob));
    json_object_set_new(c, "hidden_size", json_integer(md->hidden_size));
    if (ce) {
        json_t *il = json_object(), *li = json_object();
        for (int k = 0; k < md->num_labels; k++) {
            char key[16];
            snprintf(key, sizeof key, "%d", k);
            json_object_set_new(il, key, json_string(md->id2label[k]));
            json_object_set_new(li, md->id2label[k], json_integer(k));
        }
        json_object_set_new(c, "id2label", il);
        json_object_set_new(c, "label2id", li);
    }
    json_object_set_new(c, "initializer_range", json_real(md->initializer_range));
    json_object_set_new(c, "intermediate_size", json_integer(md->intermediate_size));
    json_object_set_new(c, "layer_norm_eps", json_real(md->layer_norm_eps));
    json_object_set_new(c, "max_position_embeddings", json_integer(md->max_position_embeddings));
    json_object_set_new(c, "model_type", json_string("bert"));
    json_object_set_new(c, "num_attention_heads", json_integer(md->num_attention_heads));
    json_object_set_new(c, "num_hidden_layers", json_integer(md->num_hidden_layers));
    json_object_set_new(c, "pad_token_id", json_integer(md->pad_token_id));
    json_object_set_new(c, "position_embedding_type", json_string("absolute"));
    json_object_set_new(c, "type_vocab_size", json_integer(md->type_vocab_size));
    json_object_set_new(c, "vocab_size", json_integer(md->vocab_size));
    return c;
}

static int write_tokenizer(const char *dir, const ag_model_desc *md) {
    char p[PATH_CAP];
    if (path_join(p, sizeof p, dir, "vocab.txt")) return -1;
    FILE *f = fopen(p, "wb");
    if (!f) return ag_err("%s: cannot create: %s", p, strerror(errno));
    size_t w = fwrite(md->vocab, 1, md->vocab_len, f);
    if (fclose(f) || w != md->vocab_len) return ag_err("%s: write failed", p);

    static const char *const special[][2] = {
        {"unk_token", "[UNK]"}, {"sep_token", "[SEP]"}, {"pad_token", "[PAD]"},
        {"cls_token", "[CLS]"}, {"mask_token", "[MASK]"},
    };
    json_t *sm = json_object(), *tc = json_object();
    json_object_set_new(tc, "do_lower_case", json_boolean(md->do_lower_case));
    json_object_set_new(tc, "do_basic_tokenize", json_true());
    json_object_set_new(tc, "never_split", json_null());
    for (int k = 0; k < 5; k++) {
        json_object_set_new(sm, special[k][0], json_string(special[k][1]));
        json_object_set_new(tc, special[k][0], json_string(special[k][1]));
    }
    json_object_set_new(tc, "tokenize_chinese_chars", json_true());
    json_object_set_new(tc, "strip_accents", json_null());
    json_object_set_new(tc, "model_max_length", json_integer(md->max_seq_length));
    json_object_set_new(tc, "tokenizer_class", json_string("BertTokenizer"));
    if (dump_json(dir, "special_tokens_map.json", sm)) { json_decref(tc); return -1; }
    return dump_json(dir, "tokenizer_config.json", tc);
}

/* Encoder tensor names in HF (without "bert."). */
static int is_encoder_name(const char *c) {
    return !strncmp(c, "embeddings.", 11) || !strncmp(c, "encoder.", 8) || !strncmp(c, "pooler.", 7);
}

static int write_weights(const char *dir, ag_export_format fmt, const ag_model_desc *md, const ag_params *p) {
    ag_st_entry *e = calloc((size_t)(p->n ? p->n : 1), sizeof *e);
    char (*names)[AG_NAME_MAX] = calloc((size_t)(p->n ? p->n : 1), sizeof *names);
    if (!e || !names) { free(e); free(names); return ag_err("out of memory"); }
    int n = 0, rc = 0, nenc = 0;
    for (int i = 0; i < p->n && !rc; i++) {
        const char *c = canon(p->t[i].name);
        if (is_encoder_name(c)) {
            nenc++;
            const char *pre = fmt == AG_EXPORT_CROSS_ENCODER ? "bert." : "";
            if (strlen(pre) + strlen(c) >= AG_NAME_MAX) {
                rc = ag_err("tensor %s: name too long with prefix '%s'", c, pre);
                break;
            }
            memcpy(names[n], pre, strlen(pre));
            memcpy(names[n] + strlen(pre), c, strlen(c) + 1);
        } else if (fmt == AG_EXPORT_CROSS_ENCODER && !strncmp(c, "classifier.", 11)) {
            snprintf(names[n], AG_NAME_MAX, "%s", c);
        } else if (md->kind == AG_MODEL_TSDAE) {
            continue;  /* the decoder and LM head are training-only: export the encoder */
        } else {
            rc = ag_err("tensor %s has no place in the %s format", p->t[i].name,
                        fmt == AG_EXPORT_CROSS_ENCODER ? "cross-encoder" : "sentence-transformers");
            break;
        }
        e[n].name = names[n];
        e[n].ndim = p->t[i].ndim;
        e[n].shape = p->t[i].shape;
        e[n].data = ag_params_data(p, i);
        n++;
    }
    if (!rc && !nenc) rc = ag_err("the parameter table holds no BERT encoder tensors");
    char path[PATH_CAP];
    if (!rc && !(rc = path_join(path, sizeof path, dir, "model.safetensors")))
        rc = ag_st_write(path, e, n, "pt");
    free(e);
    free(names);
    return rc;
}

int ag_hf_export(const char *dir, ag_export_format fmt, const ag_model_desc *md, const ag_params *p) {
    if (ag_model_desc_check(md)) return -1;
    if (!md->vocab) return ag_err("export %s: the model carries no vocab text", dir);
    if (!p->data) return ag_err("export %s: the parameter table is not allocated", dir);
    int ce = fmt == AG_EXPORT_CROSS_ENCODER;
    if (ce && md->kind != AG_MODEL_CROSS_ENCODER)
        return ag_err("export %s: the cross-encoder format needs a cross-encoder model (this one is a %s, "
                      "without classifier.weight)", dir, ag_model_kind_name(md->kind));
    if (!ce && md->kind == AG_MODEL_CROSS_ENCODER)
        return ag_err("export %s: a cross-encoder exports with --format cross-encoder", dir);
    if (ce) {
        int w = ag_params_find(p, "classifier.weight"), b = ag_params_find(p, "classifier.bias");
        if (w < 0 || b < 0) return ag_err("export %s: the model has no classifier.weight/bias", dir);
        if (p->t[w].shape[0] != md->num_labels)
            return ag_err("export %s: classifier.weight has %lld rows but num_labels is %d", dir,
                          (long long)p->t[w].shape[0], md->num_labels);
    }
    if (mkdir_p(dir) || write_weights(dir, fmt, md, p) || dump_json(dir, "config.json", bert_config_json(md, ce)) ||
        write_tokenizer(dir, md))
        return -1;
    if (ce) return 0;

    /* sentence-transformers: the module list and each module's settings. The type names
     * and the boolean pooling keys are the long-standing ones every version reads. */
    json_t *mods = json_array();
    const char *mt[3][3] = {{"0", "", "sentence_transformers.models.Transformer"},
                            {"1", "1_Pooling", "sentence_transformers.models.Pooling"},
                            {"2", "2_Normalize", "sentence_transformers.models.Normalize"}};
    for (int k = 0; k < (md->normalize ? 3 : 2); k++) {
        json_t *o = json_object();
        json_object_set_new(o, "idx", json_integer(k));
        json_object_set_new(o, "name", json_string(mt[k][0]));
        json_object_set_new(o, "path", json_string(mt[k][1]));
        json_object_set_new(o, "type", json_string(mt[k][2]));
        json_array_append_new(mods, o);
    }
    if (dump_json(dir, "modules.json", mods)) return -1;
    char sub[PATH_CAP];
    if (path_join(sub, sizeof sub, dir, "1_Pooling") || mkdir_p(sub)) return -1;
    json_t *pc = json_object();
    json_object_set_new(pc, "word_embedding_dimension", json_integer(md->hidden_size));
    json_object_set_new(pc, "pooling_mode_cls_token", json_boolean(md->pooling == AG_POOL_CLS));
    json_object_set_new(pc, "pooling_mode_mean_tokens", json_boolean(md->pooling == AG_POOL_MEAN));
    json_object_set_new(pc, "pooling_mode_max_tokens", json_boolean(md->pooling == AG_POOL_MAX));
    json_object_set_new(pc, "pooling_mode_mean_sqrt_len_tokens", json_false());
    if (dump_json(sub, "config.json", pc)) return -1;
    if (md->normalize && (path_join(sub, sizeof sub, dir, "2_Normalize") || mkdir_p(sub))) return -1;
    json_t *sb = json_object();
    json_object_set_new(sb, "max_seq_length", json_integer(md->max_seq_length));
    json_object_set_new(sb, "do_lower_case", json_boolean(md->st_lower_case));
    if (dump_json(dir, "sentence_bert_config.json", sb)) return -1;
    json_t *cst = json_object(), *ver = json_object();
    json_object_set_new(ver, "argent", json_string("1"));
    json_object_set_new(cst, "__version__", ver);
    json_object_set_new(cst, "prompts", json_object());
    json_object_set_new(cst, "default_prompt_name", json_null());
    json_object_set_new(cst, "similarity_fn_name", json_string("cosine"));
    return dump_json(dir, "config_sentence_transformers.json", cst);
}
