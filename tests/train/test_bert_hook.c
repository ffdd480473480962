/* The BERT backward hook that the training engine uses to start the gradient allreduce
 * during the backward pass (ag_bert.grad_hook): on a tiny model with a pooler, every tensor
 * is reported exactly once, blocks come in reverse registration order (the order the
 * buckets are planned in), and a reported gradient is FINAL: a copy taken inside the hook
 * equals the gradient after the whole backward. A failing hook stops the backward with -1
 * and a message naming the block. */
#include <stdlib.h>
#include <string.h>

#include "nn/bert.h"
#include "nn/error.h"
#include "tests/support/check.h"

typedef struct {
    ag_params *p;
    int calls, seen_bad, order_bad;
    int last_first;
    int *count;       /* [n] reports per tensor */
    float *snap;      /* [total] gradient copies taken in the hook */
    int fail_at;      /* call number that fails (-1: none) */
} rec;

static int hook(void *ctx, int first, int last) {
    rec *r = ctx;
    if (r->calls == r->fail_at) { r->calls++; return ag_err("injected hook failure"); }
    r->calls++;
    if (first > last || first < 0 || last >= r->p->n) r->seen_bad++;
    if (r->last_first >= 0 && last >= r->last_first) r->order_bad++;
    r->last_first = first;
    for (int t = first; t <= last && t >= 0 && t < r->p->n; t++) {
        r->count[t]++;
        memcpy(r->snap + r->p->t[t].offset, ag_params_grad(r->p, t), r->p->t[t].numel * sizeof(float));
    }
    return 0;
}

int main(void) {
    ag_bert_config cfg = {.vocab_size = 40, .hidden_size = 16, .num_hidden_layers = 3, .num_attention_heads = 2,
                          .intermediate_size = 32, .max_position_embeddings = 16, .type_vocab_size = 2,
                          .layer_norm_eps = 1e-12f, .hidden_dropout_prob = 0.1f,
                          .attention_probs_dropout_prob = 0.1f, .pad_token_id = 0};
    ag_bert m;
    ag_params p;
    ag_params_init(&p);
    if (ag_bert_register(&m, &cfg, &p, "", 1) || ag_params_alloc(&p)) return 1;
    ag_bert_init_weights(&m, &p, 7);
    check_true("the hook is off after register", m.grad_hook == NULL);
    enum { B = 3, T = 6 };
    int32_t ids[B * T], mask[B * T];
    for (int i = 0; i < B * T; i++) { ids[i] = 1 + (i * 7) % 39; mask[i] = (i % T) < T - (i / T); }
    float *dh = malloc(sizeof(float) * B * T * 16), *dp = malloc(sizeof(float) * B * 16);
    for (int i = 0; i < B * T * 16; i++) dh[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
    for (int i = 0; i < B * 16; i++) dp[i] = (float)((i * 13) % 7) / 7.0f - 0.5f;
    ag_bert_batch in = {B, T, ids, NULL, mask, NULL};
    rec r = {&p, 0, 0, 0, -1, calloc((size_t)p.n, sizeof(int)), calloc(p.total, sizeof(float)), -1};
    m.grad_hook = hook;
    m.grad_hook_ctx = &r;
    ag_params_zero_grad(&p);
    int rc = ag_bert_forward(&m, &p, &in, 1, 3, 1) || ag_bert_backward(&m, &p, dh, dp);
    check_true("forward + backward with the hook", rc == 0);
    int once = 1;
    for (int t = 0; t < p.n; t++) once &= r.count[t] == 1;
    check_true("every tensor reported exactly once", once && !r.seen_bad);
    check_true("blocks reported in reverse registration order", r.order_bad == 0);
    check_true("pooler, 2 blocks per layer, embeddings: 1 + 2*3 + 1 calls", r.calls == 8);
    check_close("gradients were final when reported", r.snap, p.grad, p.total, 0, 0);

    r.fail_at = 2;
    r.calls = 0;
    r.last_first = -1;
    ag_params_zero_grad(&p);
    rc = ag_bert_forward(&m, &p, &in, 1, 3, 1);
    rc = rc || ag_bert_backward(&m, &p, dh, dp) != -1;
    check_true("a failing hook stops the backward with a message naming the block",
               rc == 0 && strstr(ag_errmsg(), "injected hook failure") && strstr(ag_errmsg(), "layer"));
    free(r.count);
    free(r.snap);
    free(dh);
    free(dp);
    ag_bert_free(&m);
    ag_params_free(&p);
    return check_finish();
}
