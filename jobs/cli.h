/* A tiny option parser shared by the subcommands: long options "--name value" (or
 * "--name=value") and flags "--name", a table that doubles as the --help text, and typed
 * getters whose errors name the option and say what was expected. Positional arguments are
 * collected for the command to use or reject.
 *
 *   static const ag_cli_opt opts[] = {
 *       {"input", "FILE", "input file", NULL, 1},
 *       {"seed", "N", "random seed", "1", 0},
 *       {"skip-bad", NULL, "skip bad rows instead of stopping", NULL, 0},
 *       {0}};
 *   ag_cli c;
 *   int rc = ag_cli_parse(&c, "argent prepare", "Tokenise text files into a dataset.", opts, argc, argv);
 *   if (rc) return rc > 0 ? 0 : 2;      // 1: --help was printed; -1: usage error (ag_errmsg)
 *   long seed; if (ag_cli_long(&c, "seed", &seed)) ...
 *   ag_cli_free(&c); */
#ifndef ARGENT_JOBS_CLI_H
#define ARGENT_JOBS_CLI_H
#include <stdio.h>

typedef struct {
    const char *name;    /* without the leading "--"; NULL ends the table */
    const char *arg;     /* placeholder for the value ("FILE", "N"); NULL for a flag */
    const char *help;
    const char *def;     /* default value as text, or NULL */
    int required;
} ag_cli_opt;

typedef struct {
    const char *prog, *summary;
    const ag_cli_opt *opts;
    int nopts;
    const char **value;  /* [nopts] given value (flags: "1"), NULL when not given */
    int npos;
    char **pos;          /* positional arguments */
} ag_cli;

/* Parse argv[1..argc) (argv[0] is the command name). Returns 0 on success; 1 when --help
 * or -h was given (the help was printed to stdout); -1 with ag_err on an unknown option, a
 * missing value, an option given twice or a missing required option. */
int ag_cli_parse(ag_cli *c, const char *prog, const char *summary, const ag_cli_opt *opts, int argc, char **argv);
void ag_cli_free(ag_cli *c);
void ag_cli_help(const ag_cli *c, FILE *f);

/* 1 if the option was given on the command line. */
int ag_cli_given(const ag_cli *c, const char *name);
/* The value given, else the default, else NULL. */
const char *ag_cli_str(const ag_cli *c, const char *name);
/* Flags: 1 when given. */
int ag_cli_flag(const ag_cli *c, const char *name);
/* Typed values (given or default). -1 with ag_err "--name: expected ..., got 'x'" on bad text;
 * an absent option without default leaves *out unchanged and returns 0. */
int ag_cli_long(const ag_cli *c, const char *name, long *out);
int ag_cli_double(const ag_cli *c, const char *name, double *out);
/* One of a NULL-terminated list of choices: *out gets its index. */
int ag_cli_choice(const ag_cli *c, const char *name, const char *const *choices, int *out);
#endif
