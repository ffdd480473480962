/* `argent export CKPT DIR --format sentence-transformers|cross-encoder`: write a checkpoint's
 * model as a folder that SentenceTransformer(DIR) or CrossEncoder(DIR) loads offline. CKPT
 * may be a checkpoint file or a run directory (its newest checkpoint is used). */
#include <stdio.h>
#include <sys/stat.h>

#include "io/checkpoint.h"
#include "io/hfmodel.h"
#include "jobs/cli.h"
#include "jobs/commands.h"
#include "nn/error.h"

int ag_cmd_export(int argc, char **argv) {
    static const ag_cli_opt opts[] = {
        {"format", "FMT", "sentence-transformers (a bi-encoder) or cross-encoder", "sentence-transformers", 0},
        {0}};
    ag_cli c;
    int rc = ag_cli_parse(&c, "argent export CKPT DIR",
                          "Export a checkpoint (file, or run directory: its newest checkpoint) as a Hugging Face\n"
                          "folder for SentenceTransformer(DIR) or CrossEncoder(DIR).",
                          opts, argc, argv);
    if (rc) {
        if (rc < 0) fprintf(stderr, "argent export: %s\n", ag_errmsg());
        return rc > 0 ? 0 : 2;
    }
    ag_export_format fmt;
    if (c.npos != 2 || ag_export_format_parse(ag_cli_str(&c, "format"), &fmt)) {
        if (c.npos != 2) fprintf(stderr, "argent export: expected CKPT and DIR, got %d arguments (see --help)\n", c.npos);
        else fprintf(stderr, "argent export: --format: %s\n", ag_errmsg());
        ag_cli_free(&c);
        return 2;
    }
    char ckpt[4096];
    struct stat st;
    snprintf(ckpt, sizeof ckpt, "%s", c.pos[0]);
    if (stat(ckpt, &st) == 0 && S_ISDIR(st.st_mode)) {
        int k = ag_ckpt_latest(c.pos[0], ckpt, sizeof ckpt);
        if (k <= 0) {
            if (k == 0) fprintf(stderr, "argent export: %s: no checkpoint (ckpt-*.h5) in this directory\n", c.pos[0]);
            else fprintf(stderr, "argent export: %s\n", ag_errmsg());
            ag_cli_free(&c);
            return 1;
        }
    }
    ag_model_desc md;
    ag_bert m;
    ag_params p;
    ag_train_state ts;
    ag_model_desc_init(&md);
    rc = 1;
    if (ag_ckpt_load_model(ckpt, &md, &m, NULL, &p, &ts)) {
        fprintf(stderr, "argent export: %s\n", ag_errmsg());
    } else {
        if (ag_hf_export(c.pos[1], fmt, &md, &p)) {
            fprintf(stderr, "argent export: %s\n", ag_errmsg());
        } else {
            printf("exported %s (step %lld, %s) -> %s as %s\n", ckpt, (long long)ts.step, ag_model_kind_name(md.kind),
                   c.pos[1], fmt == AG_EXPORT_CROSS_ENCODER ? "cross-encoder" : "sentence-transformers");
            rc = 0;
        }
        ag_bert_free(&m);
        ag_params_free(&p);
    }
    ag_model_desc_free(&md);
    ag_cli_free(&c);
    return rc;
}
