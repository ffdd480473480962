/* `argent import DIR OUT.h5`: turn a Hugging Face / sentence-transformers BERT folder into an
 * argent checkpoint (step 0, no optimizer state) that carries the config, pooling,
 * normalize flag, max length, tokenizer settings and the vocab, so it stands alone. */
#include <stdio.h>
#include <stdlib.h>

#include "io/checkpoint.h"
#include "io/hfmodel.h"
#include "jobs/cli.h"
#include "jobs/commands.h"
#include "nn/error.h"

int ag_cmd_import(int argc, char **argv) {
    static const ag_cli_opt opts[] = {{0}};
    ag_cli c;
    int rc = ag_cli_parse(&c, "argent import DIR OUT.h5",
                          "Import a Hugging Face BERT model folder (config.json, model.safetensors, vocab.txt and,\n"
                          "when present, sentence-transformers' modules.json, 1_Pooling/config.json and\n"
                          "sentence_bert_config.json) into an argent checkpoint.",
                          opts, argc, argv);
    if (rc) {
        if (rc < 0) fprintf(stderr, "argent import: %s\n", ag_errmsg());
        return rc > 0 ? 0 : 2;
    }
    if (c.npos != 2) {
        fprintf(stderr, "argent import: expected DIR and OUT.h5, got %d argument%s (see --help)\n", c.npos,
                c.npos == 1 ? "" : "s");
        ag_cli_free(&c);
        return 2;
    }
    const char *dir = c.pos[0], *out = c.pos[1];
    ag_model_desc md;
    ag_bert m;
    ag_xhead head;
    ag_params p;
    char *notes = NULL;
    ag_model_desc_init(&md);
    rc = 1;
    if (ag_hf_import(dir, &md, &m, &head, &p, &notes)) {
        fprintf(stderr, "argent import: %s\n", ag_errmsg());
        goto out_desc;
    }
    if (notes) fprintf(stderr, "argent import: note: %s\n", notes);
    ag_train_state ts;
    ag_train_state_init(&ts);
    if (ag_ckpt_write(out, &md, &ts, &p, NULL, NULL)) {
        fprintf(stderr, "argent import: %s\n", ag_errmsg());
        goto out_model;
    }
    printf("imported %s -> %s\n  %s (%s), %d layers, hidden %d, %d heads, %d tensors, %.2fM parameters\n", dir, out,
           ag_model_kind_name(md.kind), md.architecture, md.num_hidden_layers, md.hidden_size,
           md.num_attention_heads, p.n, (double)p.total / 1e6);
    if (md.kind == AG_MODEL_CROSS_ENCODER)
        printf("  %d label%s, max_seq_length %d\n", md.num_labels, md.num_labels == 1 ? "" : "s", md.max_seq_length);
    else
        printf("  pooling %s%s, max_seq_length %d, do_lower_case %d\n", ag_pool_mode_name(md.pooling),
               md.normalize ? " + normalize" : "", md.max_seq_length, md.do_lower_case);
    rc = 0;
out_model:
    ag_bert_free(&m);
    ag_params_free(&p);
out_desc:
    free(notes);
    ag_model_desc_free(&md);
    ag_cli_free(&c);
    return rc;
}
