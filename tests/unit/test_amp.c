/* nn/amp against torch (fixture tests/fixtures/amp.agfx from gen_amp.py): the dynamic loss
 * scaler replayed step by step against torch.amp.GradScaler("cpu") driving SGD (scaled
 * loss, unscaled gradients, inf/NaN detection, skipped steps, parameters, scale and growth
 * tracker after each update; all bit-exact) for torch's defaults over 2008 steps (one
 * growth, two backoffs), odd factors (3, 0.3) with runs of skips, and a growth refused
 * because it would overflow float32; float32 -> bfloat16 / float16 conversions against
 * torch's .to() bit for bit (NaN: NaN-ness for bf16); precision names, disabled scaler and
 * the error paths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/amp.h"
#include "nn/error.h"
#include "tests/support/check.h"
#include "tests/support/fixture.h"

static const agfx_tensor *need(const agfx *fx, const char *name, int dtype)
{
    const agfx_tensor *t = agfx_find(fx, name);
    if (!t || t->dtype != dtype) {
        printf("FAIL fixture: no tensor '%s' of dtype %d\n", name, dtype);
        exit(1);
    }
    return t;
}

static int same_bits(float a, float b)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Count the elements whose bits differ (NaN matches NaN); report the first. */
static int bits_check(const char *what, const float *got, const float *want, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!same_bits(got[i], want[i])) {
            if (!bad) printf("  %s[%zu]: got %.9g want %.9g\n", what, i, got[i], want[i]);
            bad++;
        }
    }
    return bad == 0;
}

static void replay(const agfx *fx, const char *tag)
{
    char nm[64];
#define T(suffix, dt) (snprintf(nm, sizeof nm, "%s.%s", tag, suffix), need(fx, nm, dt))
    const double *cfg = T("cfg", AGFX_F64)->data;
    int interval = ((const int32_t *)T("interval", AGFX_I32)->data)[0];
    const agfx_tensor *G = T("G", AGFX_F32);
    int steps = (int)G->dims[0], n = (int)G->dims[1];
    const float *g = G->data, *unscaled = T("unscaled", AGFX_F32)->data;
    const float *param = T("param", AGFX_F32)->data, *p0 = T("p0", AGFX_F32)->data;
    const float *scale = T("scale", AGFX_F32)->data, *scale_before = T("scale_before", AGFX_F32)->data;
    const float *loss = T("loss", AGFX_F32)->data, *scaled_loss = T("scaled_loss", AGFX_F32)->data;
    const int32_t *found = T("found", AGFX_I32)->data, *tracker = T("tracker", AGFX_I32)->data;
#undef T
    ag_grad_scaler s;
    if (ag_scaler_config(&s, cfg[0], cfg[1], cfg[2], interval, 1) != 0) {
        printf("FAIL %s: config: %s\n", tag, ag_errmsg());
        check_true("scaler config", 0);
        return;
    }
    float *p = malloc(sizeof(float) * n), *gr = malloc(sizeof(float) * n);
    memcpy(p, p0, sizeof(float) * n);
    int ok_loss = 1, ok_grad = 1, ok_found = 1, ok_param = 1, ok_scale = 1, ok_tracker = 1;
    int64_t skips = 0, growths = 0, backoffs = 0;
    for (int t = 0; t < steps; t++) {
        ok_scale &= same_bits(s.scale, scale_before[t]);
        ok_loss &= same_bits(ag_scaler_scale_loss(&s, loss[t]), scaled_loss[t]);
        memcpy(gr, g + (size_t)t * n, sizeof(float) * n);
        int bad = ag_scaler_unscale(&s, gr, n);
        if (bad != found[t]) {
            if (ok_found) printf("  %s step %d: found_inf %d, torch %d\n", tag, t, bad, found[t]);
            ok_found = 0;
        }
        snprintf(nm, sizeof nm, "%s unscaled step %d", tag, t);
        if (ok_grad) ok_grad = bits_check(nm, gr, unscaled + (size_t)t * n, n);
        if (!bad)
            for (int i = 0; i < n; i++) p[i] += -0.5f * gr[i];   /* SGD lr 0.5 */
        skips += bad;
        snprintf(nm, sizeof nm, "%s param step %d", tag, t);
        if (ok_param) ok_param = bits_check(nm, p, param + (size_t)t * n, n);
        float before = s.scale;
        ag_scaler_update(&s, bad);
        growths += s.scale > before;
        backoffs += s.scale < before;
        if (!same_bits(s.scale, scale[t])) {
            if (ok_scale) printf("  %s step %d: scale %.9g, torch %.9g\n", tag, t, s.scale, scale[t]);
            ok_scale = 0;
        }
        if (s.growth_tracker != tracker[t]) {
            if (ok_tracker) printf("  %s step %d: tracker %d, torch %d\n", tag, t, s.growth_tracker, tracker[t]);
            ok_tracker = 0;
        }
    }
    printf("  %s: %d steps, %lld skipped, %lld growths, %lld backoffs, final scale %g\n", tag,
           steps, (long long)skips, (long long)growths, (long long)backoffs, s.scale);
    char w[96];
#define C(what, cond) (snprintf(w, sizeof w, "%s: %s", tag, what), check_true(w, cond))
    C("scaled loss bit-exact", ok_loss);
    C("unscaled gradients bit-exact", ok_grad);
    C("found_inf = torch's", ok_found);
    C("parameters (skipped steps) bit-exact", ok_param);
    C("scale after every update bit-exact", ok_scale);
    C("growth tracker = torch's", ok_tracker);
    C("statistics count the skips", s.skipped == skips && s.steps == steps);
#undef C
    free(p);
    free(gr);
}

static void conversions(const agfx *fx)
{
    const agfx_tensor *X = need(fx, "conv.x", AGFX_F32);
    const float *x = X->data;
    const int32_t *bf = need(fx, "conv.bf16_bits", AGFX_I32)->data;
    const int32_t *hf = need(fx, "conv.f16_bits", AGFX_I32)->data;
    size_t n = X->numel, bad_bf = 0, bad_hf = 0, bad_back = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t b = ag_f32_to_bf16(x[i]), h = ag_f32_to_f16(x[i]);
        int b_ok = isnan(x[i]) ? isnan(ag_bf16_to_f32(b)) && (bf[i] & 0x7F80) == 0x7F80 && (bf[i] & 0x7F)
                               : b == (uint16_t)bf[i];
        if (!b_ok && bad_bf++ == 0)
            printf("  bf16(%.9g = 0x%08x): 0x%04x, torch 0x%04x\n", x[i], *(const uint32_t *)&x[i], b, bf[i]);
        if (h != (uint16_t)hf[i] && bad_hf++ == 0)
            printf("  f16(%.9g = 0x%08x): 0x%04x, torch 0x%04x\n", x[i], *(const uint32_t *)&x[i], h, hf[i]);
        /* widening is exact: bf16 -> f32 -> bf16 and f16 -> f32 -> f16 give the same bits */
        if (!isnan(x[i]) && (ag_f32_to_bf16(ag_bf16_to_f32(b)) != b || ag_f32_to_f16(ag_f16_to_f32(h)) != h))
            bad_back++;
    }
    printf("  conversions: %zu values, bf16 mismatches %zu, f16 mismatches %zu\n", n, bad_bf, bad_hf);
    check_true("bf16 = torch .to(bfloat16), bit for bit", bad_bf == 0);
    check_true("f16 = torch .to(float16), bit for bit", bad_hf == 0);
    check_true("widening round trips exactly", bad_back == 0);

    float r[3], src[3] = {1.0f + 0x1p-9f, 1.0f + 0x1p-12f, 3.0f};
    ag_round_to(AG_PREC_BF16, r, src, 3);
    check_true("round_to bf16", r[0] == 1.0f && r[1] == 1.0f && r[2] == 3.0f);
    ag_round_to(AG_PREC_FP16, r, src, 3);
    check_true("round_to fp16", r[0] == 1.0f + 0x1p-9f && r[1] == 1.0f && r[2] == 3.0f);
    ag_round_to(AG_PREC_FP32, r, src, 3);
    check_true("round_to fp32 copies", memcmp(r, src, sizeof r) == 0);
}

static void api(void)
{
    ag_precision p = AG_PREC_FP32;
    check_true("parse bf16", ag_precision_parse("bf16", &p) == 0 && p == AG_PREC_BF16);
    check_true("parse float16", ag_precision_parse("float16", &p) == 0 && p == AG_PREC_FP16);
    check_true("parse fp32", ag_precision_parse("fp32", &p) == 0 && p == AG_PREC_FP32);
    check_true("parse 'half' fails, names it",
               ag_precision_parse("half", &p) == -1 && strstr(ag_errmsg(), "'half'") &&
               strstr(ag_errmsg(), "bf16"));
    check_true("parse NULL fails", ag_precision_parse(NULL, &p) == -1);
    check_true("names", !strcmp(ag_precision_name(AG_PREC_BF16), "bf16") &&
                        !strcmp(ag_precision_name(AG_PREC_FP16), "fp16"));

    ag_grad_scaler s;
    ag_scaler_init(&s);
    check_true("defaults = torch's", s.scale == 65536.0f && s.growth_factor == 2.0 &&
                                     s.backoff_factor == 0.5 && s.growth_interval == 2000 &&
                                     s.enabled && s.growth_tracker == 0);
    check_true("config: growth 1 refused", ag_scaler_config(&s, 8, 1.0, 0.5, 10, 1) == -1 &&
                                           strstr(ag_errmsg(), "growth_factor"));
    check_true("config: backoff 1 refused", ag_scaler_config(&s, 8, 2, 1.0, 10, 1) == -1 &&
                                            strstr(ag_errmsg(), "backoff_factor"));
    check_true("config: interval 0 refused", ag_scaler_config(&s, 8, 2, 0.5, 0, 1) == -1 &&
                                             strstr(ag_errmsg(), "growth_interval"));
    check_true("config: scale 1e39 refused", ag_scaler_config(&s, 1e39, 2, 0.5, 5, 1) == -1 &&
                                             strstr(ag_errmsg(), "init_scale"));
    check_true("config: NaN scale refused", ag_scaler_config(&s, NAN, 2, 0.5, 5, 1) == -1);

    /* bf16 and fp32 need no scaling: the scaler is the identity and never skips */
    ag_scaler_for(&s, AG_PREC_BF16);
    float g[3] = {1.5f, INFINITY, NAN};
    check_true("disabled: loss unchanged", ag_scaler_scale_loss(&s, 2.5f) == 2.5f);
    check_true("disabled: no inf reported, grads untouched",
               ag_scaler_unscale(&s, g, 3) == 0 && g[0] == 1.5f && isinf(g[1]));
    ag_scaler_update(&s, 1);
    check_true("disabled: update does nothing", s.scale == 65536.0f && s.skipped == 0);
    ag_scaler_for(&s, AG_PREC_FP16);
    check_true("fp16 enables the scaler", s.enabled && ag_scaler_inv_scale(&s) == 0x1p-16f);
    check_true("nonfinite_any", ag_nonfinite_any(g, 1) == 0 && ag_nonfinite_any(g, 2) == 1 &&
                                ag_nonfinite_any(g + 2, 1) == 1);
}

int main(void)
{
    agfx fx;
    if (agfx_load(&fx, ARGENT_FIXTURES "/amp.agfx") != 0) return 1;
    replay(&fx, "def");
    replay(&fx, "odd");
    replay(&fx, "big");
    conversions(&fx);
    api();
    agfx_free(&fx);
    return check_finish();
}
