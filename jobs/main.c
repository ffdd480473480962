/* argent: the program users run. Subcommands live in jobs/, one small file each; this file
 * only dispatches to them. */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "jobs/commands.h"
#include "nn/blas_env.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"demo", ag_cmd_demo, "train a tiny bi-encoder on generated pairs (the built-in default run)"},
    {"prepare", ag_cmd_prepare, "read CSV/TSV/JSONL/line files, tokenise, write an HDF5 dataset"},
    {"import", ag_cmd_import, "Hugging Face / sentence-transformers BERT folder -> argent checkpoint"},
    {"export", ag_cmd_export, "checkpoint -> folder for SentenceTransformer(DIR) or CrossEncoder(DIR)"},
    {"train-bi", ag_cmd_train_bi, "train a bi-encoder on pair datasets (data-parallel, resumable)"},
    {"eval", ag_cmd_eval, "evaluate a bi-encoder: STS correlations or binary classification (table, CSV)"},
    {"encode", ag_cmd_encode, "sentences of a dataset -> embeddings HDF5 (any number of ranks)"},
    {"train-cross", ag_cmd_train_cross, "fine-tune a cross-encoder on gold pairs (data-parallel, resumable)"},
    {"label", ag_cmd_label, "silver-label a pair dataset with a cross-encoder (chunked, resumable, any np)"},
    {"tsdae", ag_cmd_tsdae, "TSDAE pre-training of a bi-encoder on sentences (data-parallel, resumable)"},
    {"pipeline", ag_cmd_pipeline, "run a recipe's stages in order (jobs/recipes; resumable, skips finished stages)"},
    {"synth", ag_cmd_synth, "generate the built-in default data and a small model (for the default pipeline)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: argent <command> [options]   (argent <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    ag_blas_tune_reexec(argv);
    /* Training steps allocate and free the same large buffers every step (the MPI library's
     * reduction temporaries, 16 MiB pieces, several at once). glibc would map the larger
     * ones afresh and hand freed memory at the top of the heap back to the system, so every
     * step paid a page fault and a page clear per 4 KiB (5-8% of a TSDAE step): serve up to
     * 32 MiB (glibc's ceiling) from the heap and keep what is freed for reuse. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) { usage(stdout); return 0; }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "argent: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
