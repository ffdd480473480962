/* AdamW + linear warm-up schedule + gradient clipping against torch.optim.AdamW,
 * transformers' schedulers and clip_grad_norm_ (fixture tests/fixtures/optim.agfx from
 * gen_optim.py): 5 steps of the ST fit loop, parameters after each step within 1e-5
 * relative (and their change since the start within 1e-4), final moments, the clip norms, the
 * decay rule, schedule tables, and the error / non-finite paths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "nn/optim.h"
#include "nn/params.h"
#include "tests/support/check.h"
#include "tests/support/fixture.h"

static const char *NAMES[] = {
    "embeddings.word_embeddings.weight",
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.0.attention.self.query.bias",
    "encoder.layer.0.attention.output.LayerNorm.weight",
    "encoder.layer.0.attention.output.LayerNorm.bias",
    "classifier.weight",
    "classifier.bias",
};
enum { NT = sizeof NAMES / sizeof NAMES[0] };

static double f64(const agfx *fx, const char *name, int i) {
    const agfx_tensor *t = agfx_find(fx, name);
    if (!t || t->dtype != AGFX_F64 || (size_t)i >= t->numel) {
        printf("FAIL fixture: no float64 '%s'[%d]\n", name, i);
        exit(1);
    }
    return ((const double *)t->data)[i];
}

static void test_fit_loop(const agfx *fx) {
    double lr0 = f64(fx, "hyper", 0), wd = f64(fx, "hyper", 1), max_norm = f64(fx, "hyper", 5);
    ag_schedule sched = {AG_SCHED_LINEAR, (int64_t)f64(fx, "hyper", 2), (int64_t)f64(fx, "hyper", 3)};
    int steps = (int)f64(fx, "hyper", 4);

    ag_params p;
    ag_params_init(&p);
    char key[256], what[256];
    int idx[NT];
    for (int i = 0; i < NT; i++) {
        snprintf(key, sizeof key, "init.%s", NAMES[i]);
        const agfx_tensor *t = agfx_find(fx, key);
        idx[i] = ag_params_add(&p, NAMES[i], t->ndim, t->dims);
        snprintf(key, sizeof key, "decay.%s", NAMES[i]);
        snprintf(what, sizeof what, "decay rule for %s matches ST's fit", NAMES[i]);
        check_true(what, p.t[idx[i]].decay == (int)agfx_scalar(fx, key));
    }
    ag_params_alloc(&p);
    for (int i = 0; i < NT; i++) {
        snprintf(key, sizeof key, "init.%s", NAMES[i]);
        memcpy(ag_params_data(&p, idx[i]), agfx_f32(fx, key, NULL), p.t[idx[i]].numel * sizeof(float));
    }
    ag_adamw opt;
    check_true("AdamW init", ag_adamw_init(&opt, &p, wd) == 0 && opt.step == 0 && opt.n == p.total);

    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < NT; i++) {
            snprintf(key, sizeof key, "grad.%d.%s", s, NAMES[i]);
            memcpy(ag_params_grad(&p, idx[i]), agfx_f32(fx, key, NULL), p.t[idx[i]].numel * sizeof(float));
        }
        double norm = ag_clip_grad_norm(&p, max_norm);
        snprintf(key, sizeof key, "norm.%d", s);
        snprintf(what, sizeof what, "step %d: clip_grad_norm_ total norm %.6f (torch %.6f)", s, norm, f64(fx, key, 0));
        check_true(what, fabs(norm - f64(fx, key, 0)) <= 1e-6 * f64(fx, key, 0) && norm > max_norm);
        snprintf(what, sizeof what, "step %d: clipped norm is max_norm", s);
        check_true(what, fabs(ag_grad_norm(&p) - max_norm / (norm + 1e-6) * norm) < 1e-6);
        double lr = lr0 * ag_schedule_factor(&sched, opt.step);
        snprintf(key, sizeof key, "lr.%d", s);
        snprintf(what, sizeof what, "step %d: lr %.8f (scheduler %.8f)", s, lr, f64(fx, key, 0));
        check_true(what, fabs(lr - f64(fx, key, 0)) < 1e-12);
        check_true("AdamW step", ag_adamw_step(&opt, &p, lr) == 0);
        ag_params_zero_grad(&p);
        for (int i = 0; i < NT; i++) {
            size_t n = p.t[idx[i]].numel;
            const float *got = ag_params_data(&p, idx[i]);
            snprintf(key, sizeof key, "param.%d.%s", s, NAMES[i]);
            const float *want = agfx_f32(fx, key, NULL);
            snprintf(what, sizeof what, "step %d: %s vs torch AdamW", s, NAMES[i]);
            check_rel(what, got, want, n, 1e-5);
            /* The change since the start is what AdamW computed; compare it at 1e-4 too, since
             * 1e-5 of the parameter is a loose bound on a small update. */
            snprintf(key, sizeof key, "init.%s", NAMES[i]);
            const float *init = agfx_f32(fx, key, NULL);
            float *dg = malloc(n * sizeof *dg), *dw = malloc(n * sizeof *dw);
            for (size_t k = 0; k < n; k++) { dg[k] = got[k] - init[k]; dw[k] = want[k] - init[k]; }
            snprintf(what, sizeof what, "step %d: change of %s vs torch", s, NAMES[i]);
            if (s > 0) {
                check_rel(what, dg, dw, n, 1e-4);
            } else {   /* lr 0 at the first update of a warm-up: nothing moves yet */
                int still = 1;
                for (size_t k = 0; k < n; k++) still &= dg[k] == 0 && dw[k] == 0;
                check_true(what, still);
            }
            free(dg); free(dw);
        }
    }
    check_true("AdamW counted the steps", opt.step == steps);
    for (int i = 0; i < NT; i++) {
        size_t n = p.t[idx[i]].numel, off = p.t[idx[i]].offset;
        snprintf(key, sizeof key, "m.%s", NAMES[i]);
        snprintf(what, sizeof what, "first moment of %s vs torch exp_avg", NAMES[i]);
        check_rel(what, opt.m + off, agfx_f32(fx, key, NULL), n, 1e-5);
        snprintf(key, sizeof key, "v.%s", NAMES[i]);
        snprintf(what, sizeof what, "second moment of %s vs torch exp_avg_sq", NAMES[i]);
        check_rel(what, opt.v + off, agfx_f32(fx, key, NULL), n, 1e-5);
    }

    /* A table of another size is refused with a message. */
    ag_params q;
    ag_params_init(&q);
    ag_params_add(&q, "x.weight", 1, (int64_t[]){3});
    ag_params_alloc(&q);
    check_true("AdamW step on a table of another size is an error",
               ag_adamw_step(&opt, &q, 0.1) == -1 && strstr(ag_errmsg(), "does not match"));
    ag_params_free(&q);
    ag_adamw_free(&opt);
    ag_params_free(&p);
}

static void test_schedules(const agfx *fx) {
    static const struct { const char *key; ag_schedule s; } T[] = {
        {"sched.linear_2_5", {AG_SCHED_LINEAR, 2, 5}},
        {"sched.linear_0_4", {AG_SCHED_LINEAR, 0, 4}},
        {"sched.linear_3_3", {AG_SCHED_LINEAR, 3, 3}},
        {"sched.linear_1_8", {AG_SCHED_LINEAR, 1, 8}},
        {"sched.constant_warmup_3", {AG_SCHED_CONSTANT_WARMUP, 3, 0}},
    };
    for (size_t k = 0; k < sizeof T / sizeof T[0]; k++) {
        int ok = 1;
        for (int s = 0; s < 10; s++) ok &= fabs(ag_schedule_factor(&T[k].s, s) - f64(fx, T[k].key, s)) < 1e-12;
        char what[128];
        snprintf(what, sizeof what, "schedule %s matches transformers at steps 0..9", T[k].key + 6);
        check_true(what, ok);
    }
    ag_schedule c = {AG_SCHED_CONSTANT, 5, 10};
    check_true("constant schedule is 1", ag_schedule_factor(&c, 0) == 1 && ag_schedule_factor(&c, 100) == 1);
    ag_sched_kind kd;
    check_true("schedule names (HF and ST)", ag_schedule_parse("warmuplinear", &kd) == 0 && kd == AG_SCHED_LINEAR &&
               ag_schedule_parse("constant_with_warmup", &kd) == 0 && kd == AG_SCHED_CONSTANT_WARMUP &&
               ag_schedule_parse("constantlr", &kd) == 0 && kd == AG_SCHED_CONSTANT);
    check_true("unknown schedule name is an error naming it",
               ag_schedule_parse("cosine", &kd) == -1 && strstr(ag_errmsg(), "'cosine'"));
}

static void test_clip_edges(void) {
    ag_params p;
    ag_params_init(&p);
    int a = ag_params_add(&p, "a.weight", 1, (int64_t[]){3});
    int b = ag_params_add(&p, "a.bias", 1, (int64_t[]){2});
    ag_params_alloc(&p);
    float *ga = ag_params_grad(&p, a), *gb = ag_params_grad(&p, b);
    ga[0] = 0.3f; ga[1] = 0.0f; ga[2] = -0.4f; gb[0] = 0; gb[1] = 0;
    double n = ag_clip_grad_norm(&p, 1.0);
    check_true("clip below max_norm: norm returned, gradients unchanged",
               fabs(n - 0.5) < 1e-7 && ga[0] == 0.3f && ga[2] == -0.4f);
    ga[1] = INFINITY;
    n = ag_clip_grad_norm(&p, 1.0);
    check_true("clip with an infinite gradient: returns inf, leaves the gradients",
               isinf(n) && ga[0] == 0.3f && isinf(ga[1]));
    ga[1] = NAN;
    n = ag_clip_grad_norm(&p, 1.0);
    check_true("clip with a NaN gradient: returns NaN", isnan(n) && ga[0] == 0.3f);

    /* weight decay spares biases; lr 0 changes nothing; moments still advance */
    ag_params_zero_grad(&p);
    float *wa = ag_params_data(&p, a), *wb = ag_params_data(&p, b);
    wa[0] = wb[0] = 1.0f;
    ag_adamw o;
    ag_adamw_init(&o, &p, 0.5);
    ga[0] = 1.0f;
    ag_adamw_step(&o, &p, 0.0);
    check_true("AdamW with lr 0 moves nothing, moments advance", wa[0] == 1.0f && o.m[p.t[a].offset] != 0);
    ag_params_zero_grad(&p);
    memset(o.m, 0, o.n * sizeof(float));
    memset(o.v, 0, o.n * sizeof(float));
    ag_adamw_step(&o, &p, 0.1);   /* zero gradient: only the decoupled decay acts */
    check_true("decoupled weight decay on weights only", fabsf(wa[0] - 0.95f) < 1e-7f && wb[0] == 1.0f);
    check_true("AdamW refuses a NaN learning rate", ag_adamw_step(&o, &p, NAN) == -1);
    ag_adamw_free(&o);
    ag_params_free(&p);
}

/* The engine's fused step (norm, then AdamW reading the gradient times the clip coefficient
 * and zeroing it) against clip_grad_norm_ followed by AdamW: the same bits in parameters and
 * moments, over tensors large enough for the threaded vector loop and small odd ones. */
static void test_fused_update(void) {
    ag_params a, b;
    ag_params_init(&a);
    ag_params_init(&b);
    const int64_t sizes[4][2] = {{300, 401}, {7, 1}, {70001, 1}, {13, 5}};
    const char *names[4] = {"embeddings.word_embeddings.weight", "x.bias", "y.LayerNorm.weight", "z.weight"};
    for (int t = 0; t < 4; t++) {
        ag_params_add(&a, names[t], 2, sizes[t]);
        ag_params_add(&b, names[t], 2, sizes[t]);
    }
    ag_params_alloc(&a);
    ag_params_alloc(&b);
    uint32_t st = 12345;
    for (size_t i = 0; i < a.total; i++) {
        st = st * 1664525u + 1013904223u;
        a.data[i] = b.data[i] = (float)((int)(st >> 8) - (1 << 23)) / (float)(1 << 23);
        st = st * 1664525u + 1013904223u;
        a.grad[i] = b.grad[i] = (float)((int)(st >> 8) - (1 << 23)) / (float)(1 << 20);
    }
    ag_adamw oa, ob;
    ag_adamw_init(&oa, &a, 0.01);
    ag_adamw_init(&ob, &b, 0.01);
    int same = 1, zeroed = 1, clipped = 0;
    for (int step = 0; step < 3; step++) {
        double na = ag_clip_grad_norm(&a, 1.0);
        ag_adamw_step(&oa, &a, 2e-3);
        double nb = ag_grad_norm(&b);
        float c = ag_clip_coef(nb, 1.0);
        clipped |= c < 1.0f;
        same &= na == nb && ag_adamw_update(&ob, &b, 2e-3, c, 1) == 0;
        same &= !memcmp(a.data, b.data, a.total * sizeof(float)) && !memcmp(oa.m, ob.m, a.total * sizeof(float)) &&
                !memcmp(oa.v, ob.v, a.total * sizeof(float));
        for (int t = 0; t < b.n; t++)
            for (size_t i = b.t[t].offset; i < b.t[t].offset + b.t[t].numel; i++)
                zeroed &= b.grad[i] == 0.0f && !signbit(b.grad[i]);
        /* next step's gradient (a's is still the clipped one: refill both) */
        for (size_t i = 0; i < a.total; i++) {
            st = st * 1664525u + 1013904223u;
            a.grad[i] = b.grad[i] = (float)((int)(st >> 8) - (1 << 23)) / (float)(1 << (21 + step));
        }
    }
    check_true("fused clip + AdamW (+ zeroing) gives clip_grad_norm_ then AdamW's bits", same && clipped);
    check_true("fused update leaves the gradient zeroed", zeroed);
    check_true("clip coefficient: 1 for a small or non-finite norm",
               ag_clip_coef(0.5, 1.0) == 1.0f && ag_clip_coef(INFINITY, 1.0) == 1.0f && ag_clip_coef(NAN, 1.0) == 1.0f &&
               ag_clip_coef(4.0, 1.0) == (float)(1.0 / (4.0 + 1e-6)));
    ag_adamw_free(&oa);
    ag_adamw_free(&ob);
    ag_params_free(&a);
    ag_params_free(&b);
}

int main(void) {
    agfx fx;
    if (agfx_load(&fx, ARGENT_FIXTURES "/optim.agfx")) return 1;
    test_fit_loop(&fx);
    test_schedules(&fx);
    test_clip_edges();
    test_fused_update();
    agfx_free(&fx);
    return check_finish();
}
