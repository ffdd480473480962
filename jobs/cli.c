/* Long-option parsing for the subcommands; see cli.h. */
#include "jobs/cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"

static int find(const ag_cli *c, const char *name, size_t len) {
    for (int i = 0; i < c->nopts; i++)
        if (strlen(c->opts[i].name) == len && !strncmp(c->opts[i].name, name, len)) return i;
    return -1;
}

void ag_cli_free(ag_cli *c) {
    free(c->value);
    free(c->pos);
    c->value = NULL;
    c->pos = NULL;
    c->npos = 0;
}

void ag_cli_help(const ag_cli *c, FILE *f) {
    fprintf(f, "usage: %s [options]\n", c->prog);
    if (c->summary) fprintf(f, "%s\n", c->summary);
    fprintf(f, "\noptions:\n");
    for (int i = 0; i < c->nopts; i++) {
        const ag_cli_opt *o = &c->opts[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "  %-26s %s", left, o->help ? o->help : "");
        if (o->required) fprintf(f, " (required)");
        else if (o->def) fprintf(f, " (default %s)", o->def);
        fprintf(f, "\n");
    }
    fprintf(f, "  %-26s %s\n", "--help", "show this help");
}

int ag_cli_parse(ag_cli *c, const char *prog, const char *summary, const ag_cli_opt *opts, int argc, char **argv) {
    memset(c, 0, sizeof *c);
    c->prog = prog;
    c->summary = summary;
    c->opts = opts;
    while (opts[c->nopts].name) c->nopts++;
    c->value = calloc((size_t)(c->nopts ? c->nopts : 1), sizeof *c->value);
    c->pos = calloc((size_t)(argc > 0 ? argc : 1), sizeof *c->pos);
    if (!c->value || !c->pos) { ag_cli_free(c); return ag_err("out of memory"); }
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || !strcmp(a, "-")) { c->pos[c->npos++] = argv[i]; continue; }
        if (!strcmp(a, "--")) { only_pos = 1; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            ag_cli_help(c, stdout);
            ag_cli_free(c);
            return 1;
        }
        if (a[1] != '-') {
            ag_err("%s: unknown option '%s' (options are long: --name value; see --help)", prog, a);
            goto fail;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        int k = find(c, name, nl);
        if (k < 0) {
            ag_err("%s: unknown option '--%.*s' (see %s --help)", prog, (int)nl, name, prog);
            goto fail;
        }
        if (c->value[k]) {
            ag_err("%s: option --%s given twice", prog, opts[k].name);
            goto fail;
        }
        if (!opts[k].arg) {
            if (eq) { ag_err("%s: option --%s is a flag and takes no value", prog, opts[k].name); goto fail; }
            c->value[k] = "1";
        } else if (eq) {
            c->value[k] = eq + 1;
        } else {
            if (i + 1 >= argc) {
                ag_err("%s: option --%s needs a value (%s)", prog, opts[k].name, opts[k].arg);
                goto fail;
            }
            c->value[k] = argv[++i];
        }
    }
    for (int k = 0; k < c->nopts; k++)
        if (opts[k].required && !c->value[k]) {
            ag_err("%s: missing required option --%s %s (%s)", prog, opts[k].name, opts[k].arg ? opts[k].arg : "",
                   opts[k].help ? opts[k].help : "");
            goto fail;
        }
    return 0;
fail:
    ag_cli_free(c);
    return -1;
}

static int lookup(const ag_cli *c, const char *name) {
    int k = find(c, name, strlen(name));
    return k;
}

int ag_cli_given(const ag_cli *c, const char *name) {
    int k = lookup(c, name);
    return k >= 0 && c->value && c->value[k] != NULL;
}

const char *ag_cli_str(const ag_cli *c, const char *name) {
    int k = lookup(c, name);
    if (k < 0) return NULL;
    return (c->value && c->value[k]) ? c->value[k] : c->opts[k].def;
}

int ag_cli_flag(const ag_cli *c, const char *name) {
    const char *v = ag_cli_str(c, name);
    return v && strcmp(v, "0") != 0;
}

int ag_cli_long(const ag_cli *c, const char *name, long *out) {
    const char *v = ag_cli_str(c, name);
    if (!v) return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno == ERANGE) return ag_err("--%s: expected an integer, got '%s'", name, v);
    *out = x;
    return 0;
}

int ag_cli_double(const ag_cli *c, const char *name, double *out) {
    const char *v = ag_cli_str(c, name);
    if (!v) return 0;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno == ERANGE || !isfinite(x)) return ag_err("--%s: expected a number, got '%s'", name, v);
    *out = x;
    return 0;
}

int ag_cli_choice(const ag_cli *c, const char *name, const char *const *choices, int *out) {
    const char *v = ag_cli_str(c, name);
    if (!v) return 0;
    for (int i = 0; choices[i]; i++)
        if (!strcmp(v, choices[i])) { *out = i; return 0; }
    char list[256];
    size_t o = 0;
    list[0] = 0;
    for (int i = 0; choices[i] && o + 1 < sizeof list; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", choices[i]);
    return ag_err("--%s: expected one of %s, got '%s'", name, list, v);
}
