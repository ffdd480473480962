/* `argent pipeline RECIPE [NAME=VALUE ...]`: run a recipe's stages in order, in this one MPI
 * job, each stage being an argent subcommand called in-process on every rank; then write the
 * report (jobs/report.h) and print the results table. Run again, it resumes: a stage that
 * completed with the same arguments (its marker in $OUT/pipeline/) and whose outputs exist
 * is skipped, as long as every stage before it was skipped too; a stage that was interrupted
 * runs again and resumes itself (training stages from their checkpoints, label from its
 * finished chunks). Exit codes are the stages': 0, 1 failure, 2 bad usage, 85 stopped by a
 * signal after a checkpoint (run the same command again).
 *
 * The recipe format is slurm/submit's, so one file serves both (docs/pipelines.md):
 *   # comment; blank lines ignored; a line ending in a backslash continues
 *   set NAME=VALUE                      a variable, used as $NAME or ${NAME} later
 *   STAGE [SBATCH-OPTION...]: [ARGENT-ARGUMENT...]
 * Words are split as shlex.split(comments=True) splits them (quotes, backslashes, '#'
 * starts a comment), then $NAME / ${NAME} are expanded inside each word ($$ is a literal
 * $): from NAME=VALUE on the command line (and --out, which sets OUT), then the recipe's
 * set lines, then the built-ins OUT (default argent-RECIPE), NP (ranks), RECIPE (its name)
 * and RECIPE_DIR, then the environment. The sbatch options are for slurm/submit only.
 *
 * Why in-process: the job is started once under mpirun and every stage needs all its
 * ranks; nested mpirun calls are not possible from inside an MPI job. MPI is initialised
 * here, before the first stage, so that each stage's ag_comm_init/ag_comm_finalize pair
 * sets up and frees argent's communicators without ending MPI. Stages that are not MPI
 * programs (import, export, synth) run on rank 0 while the others wait. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dist/signals.h"
#include "jobs/cli.h"
#include "jobs/commands.h"
#include "jobs/report.h"
#include "nn/amp.h"
#include "nn/error.h"

#define PATH_CAP 4200

/* snprintf into a path buffer; -1 with ag_err when the result does not fit. */
static int pathf(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pathf(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= cap) return ag_err("path too long: %.80s...", out);
    return 0;
}

/* ---- the stages a recipe may use ------------------------------------------------------ */

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    int collective;   /* 1: every rank runs it; 0: rank 0 alone */
    int device;       /* 1: takes --device / --precision (jobs/device.h) */
} stage_cmd;

static const stage_cmd stage_cmds[] = {
    {"synth", ag_cmd_synth, 0, 0},       {"prepare", ag_cmd_prepare, 1, 0},         {"import", ag_cmd_import, 0, 0},
    {"export", ag_cmd_export, 0, 0},     {"train-cross", ag_cmd_train_cross, 1, 1}, {"label", ag_cmd_label, 1, 1},
    {"train-bi", ag_cmd_train_bi, 1, 1}, {"tsdae", ag_cmd_tsdae, 1, 1},             {"eval", ag_cmd_eval, 1, 0},
    {"encode", ag_cmd_encode, 1, 1},
};
#define N_STAGE_CMDS ((int)(sizeof stage_cmds / sizeof stage_cmds[0]))

static const stage_cmd *find_cmd(const char *name) {
    for (int i = 0; i < N_STAGE_CMDS; i++)
        if (!strcmp(stage_cmds[i].name, name)) return &stage_cmds[i];
    return NULL;
}

/* ---- growable string lists ------------------------------------------------------------ */

typedef struct {
    int n, cap;
    char **s;
} strlist;

static int sl_push(strlist *l, char *s) {
    if (!s) return ag_err("out of memory");
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        char **ns = realloc(l->s, (size_t)cap * sizeof *ns);
        if (!ns) { free(s); return ag_err("out of memory"); }
        l->s = ns;
        l->cap = cap;
    }
    l->s[l->n++] = s;
    return 0;
}

static void sl_free(strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

/* A growable byte buffer. */
typedef struct {
    char *p;
    size_t n, cap;
} buf;

static int buf_add(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) return ag_err("out of memory");
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

/* ---- variables ------------------------------------------------------------------------ */

typedef struct {
    strlist names, values;
} vars;

static const char *vars_get(const vars *v, const char *name) {
    for (int i = v->names.n - 1; i >= 0; i--)
        if (!strcmp(v->names.s[i], name)) return v->values.s[i];
    return NULL;
}

static int vars_set(vars *v, const char *name, const char *value) {
    for (int i = 0; i < v->names.n; i++)
        if (!strcmp(v->names.s[i], name)) {
            char *c = strdup(value);
            if (!c) return ag_err("out of memory");
            free(v->values.s[i]);
            v->values.s[i] = c;
            return 0;
        }
    if (sl_push(&v->names, strdup(name))) return -1;
    return sl_push(&v->values, strdup(value));
}

static void vars_free(vars *v) {
    sl_free(&v->names);
    sl_free(&v->values);
}

/* Lookup: command-line overrides, then the recipe's set lines and the built-ins, then the
 * environment (slurm/submit's order). */
typedef struct {
    const vars *over, *rec;
} scope;

static const char *scope_get(const scope *sc, const char *name) {
    const char *v = vars_get(sc->over, name);
    if (!v) v = vars_get(sc->rec, name);
    if (!v) v = getenv(name);
    return v;
}

static int is_name_start(char c) { return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
static int is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

/* $NAME, ${NAME} and $$ inside one word. */
static char *expand(const char *w, const scope *sc, const char *where) {
    buf b = {0};
    if (buf_add(&b, "", 0)) return NULL;
    for (const char *s = w; *s;) {
        if (s[0] == '$' && s[1] == '$') {
            if (buf_add(&b, "$", 1)) goto fail;
            s += 2;
            continue;
        }
        const char *name = NULL;
        size_t len = 0, skip = 0;
        if (s[0] == '$' && s[1] == '{' && is_name_start(s[2])) {
            const char *e = s + 2;
            while (is_name_char(*e)) e++;
            if (*e == '}') { name = s + 2; len = (size_t)(e - name); skip = len + 3; }
        } else if (s[0] == '$' && is_name_start(s[1])) {
            const char *e = s + 1;
            while (is_name_char(*e)) e++;
            name = s + 1;
            len = (size_t)(e - name);
            skip = len + 1;
        }
        if (!name) {
            if (buf_add(&b, s, 1)) goto fail;
            s++;
            continue;
        }
        char nm[128];
        if (len >= sizeof nm) { ag_err("%s: variable name too long", where); goto fail; }
        memcpy(nm, name, len);
        nm[len] = 0;
        const char *v = scope_get(sc, nm);
        if (!v) {
            ag_err("%s: $%s is not defined (add 'set %s=...' to the recipe, pass %s=VALUE to argent pipeline, or "
                   "export it)", where, nm, nm, nm);
            goto fail;
        }
        if (buf_add(&b, v, strlen(v))) goto fail;
        s += skip;
    }
    return b.p;
fail:
    free(b.p);
    return NULL;
}

/* shlex.split(text, comments=True) in POSIX mode, then expansion of each word. */
static int split_words(const char *text, const scope *sc, const char *where, strlist *out) {
    buf w = {0};
    int in_word = 0, rc = 0;
    const char *s = text;
    while (*s && !rc) {
        char c = *s;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            s++;
            if (in_word) {
                char *e = expand(w.p ? w.p : "", sc, where);
                rc = e ? sl_push(out, e) : -1;
                w.n = 0;
                if (w.p) w.p[0] = 0;
                in_word = 0;
            }
            continue;
        }
        if (c == '#') break;  /* a comment, even inside a word (shlex's POSIX mode) */
        in_word = 1;
        if (c == '\\') {
            if (!s[1]) { rc = ag_err("%s: a backslash at the end of the text", where); break; }
            rc = buf_add(&w, s + 1, 1);
            s += 2;
        } else if (c == '\'') {
            const char *e = strchr(s + 1, '\'');
            if (!e) { rc = ag_err("%s: no closing quotation (')", where); break; }
            rc = buf_add(&w, s + 1, (size_t)(e - s - 1));
            if (!w.p) rc = buf_add(&w, "", 0);
            s = e + 1;
        } else if (c == '"') {
            s++;
            for (;;) {
                if (!*s) { rc = ag_err("%s: no closing quotation (\")", where); break; }
                if (*s == '"') { s++; break; }
                if (*s == '\\' && (s[1] == '"' || s[1] == '\\')) {
                    rc = buf_add(&w, s + 1, 1);
                    s += 2;
                } else {
                    rc = buf_add(&w, s, 1);
                    s++;
                }
                if (rc) break;
            }
            if (!rc && !w.p) rc = buf_add(&w, "", 0);
        } else {
            rc = buf_add(&w, s, 1);
            s++;
        }
    }
    if (!rc && in_word) {
        char *e = expand(w.p ? w.p : "", sc, where);
        rc = e ? sl_push(out, e) : -1;
    }
    free(w.p);
    return rc;
}

/* ---- the recipe ----------------------------------------------------------------------- */

typedef struct {
    const stage_cmd *cmd;
    char where[PATH_CAP + 16];   /* file:line */
    strlist args;                /* the arguments after "STAGE:" */
} stage;

typedef struct {
    char path[PATH_CAP], name[256], dir[PATH_CAP];
    int n;
    stage *st;
} recipe;

static void recipe_free(recipe *r) {
    for (int i = 0; i < r->n; i++) sl_free(&r->st[i].args);
    free(r->st);
    r->st = NULL;
    r->n = 0;
}

static int read_text(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return ag_err("%s: cannot read the recipe: %s", path, strerror(errno));
    buf b = {0};
    char chunk[4096];
    size_t k;
    int rc = buf_add(&b, "", 0);
    while (!rc && (k = fread(chunk, 1, sizeof chunk, f)) > 0) rc = buf_add(&b, chunk, k);
    if (!rc && ferror(f)) rc = ag_err("%s: read error", path);
    fclose(f);
    if (rc) { free(b.p); return -1; }
    *out = b.p;
    return 0;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
    return s;
}

/* Parse the recipe; rec receives its set lines (in order, each expanded with what came
 * before), the built-ins having been put there first by the caller. */
static int recipe_parse(recipe *r, vars *rec, const vars *over) {
    char *text = NULL;
    if (read_text(r->path, &text)) return -1;
    int rc = 0, lineno = 0, cap = 0;
    char *p = text;
    scope sc = {over, rec};
    while (*p && !rc) {
        /* One logical line: physical lines joined while they end in a backslash. */
        buf line = {0};
        int first = lineno + 1;
        for (;;) {
            char *e = strchr(p, '\n');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            if (n > 0 && p[n - 1] == '\r') n--;
            lineno++;
            int cont = n > 0 && p[n - 1] == '\\';
            rc = buf_add(&line, p, cont ? n - 1 : n);
            p = e ? e + 1 : p + strlen(p);
            if (rc || !cont || !*p) break;
            rc = buf_add(&line, " ", 1);
            if (rc) break;
        }
        if (rc) { free(line.p); break; }
        char where[PATH_CAP + 16];
        snprintf(where, sizeof where, "%s:%d", r->path, first);
        char *s = line.p ? trim(line.p) : (char *)"";
        if (!*s || *s == '#') { free(line.p); continue; }
        if (!strncmp(s, "set", 3) && (s[3] == ' ' || s[3] == '\t')) {
            char *nm = trim(s + 4), *eq = nm;
            while (is_name_char(*eq)) eq++;
            if (eq == nm || !is_name_start(*nm) || *eq != '=') {
                rc = ag_err("%s: expected 'set NAME=VALUE', got: %s", where, s);
            } else {
                *eq = 0;
                if (!vars_get(over, nm)) {
                    strlist w = {0};
                    rc = split_words(eq + 1, &sc, where, &w);
                    buf v = {0};
                    if (!rc) rc = buf_add(&v, "", 0);
                    for (int i = 0; i < w.n && !rc; i++) {
                        if (i) rc = buf_add(&v, " ", 1);
                        if (!rc) rc = buf_add(&v, w.s[i], strlen(w.s[i]));
                    }
                    if (!rc) rc = vars_set(rec, nm, v.p);
                    free(v.p);
                    sl_free(&w);
                }
            }
            free(line.p);
            continue;
        }
        /* STAGE [OPTIONS]: ARGS -- the stage part ends at the first colon followed by a
         * space or the end of the line. */
        char *colon = NULL;
        for (char *q = s; *q; q++)
            if (*q == ':' && (q[1] == 0 || q[1] == ' ' || q[1] == '\t')) { colon = q; break; }
        if (!colon) {
            rc = ag_err("%s: expected 'set NAME=VALUE' or 'STAGE [SBATCH-OPTIONS]: [ARGUMENTS]' (a colon followed by "
                        "a space ends the stage part), got: %s", where, s);
            free(line.p);
            break;
        }
        *colon = 0;
        strlist head = {0};
        rc = split_words(s, &sc, where, &head);
        const stage_cmd *cmd = NULL;
        if (!rc && head.n == 0) rc = ag_err("%s: no stage name before the colon", where);
        if (!rc && !(cmd = find_cmd(head.s[0]))) {
            char known[512] = "";
            size_t kn = 0;
            for (int i = 0; i < N_STAGE_CMDS; i++)
                kn += (size_t)snprintf(known + kn, kn < sizeof known ? sizeof known - kn : 0, "%s%s", i ? ", " : "",
                                       stage_cmds[i].name);
            rc = ag_err("%s: '%s' is not a stage argent pipeline can run (stages: %s)", where, head.s[0], known);
        }
        sl_free(&head);
        if (!rc && r->n == cap) {
            cap = cap ? 2 * cap : 16;
            stage *ns = realloc(r->st, (size_t)cap * sizeof *ns);
            if (!ns) rc = ag_err("out of memory");
            else r->st = ns;
        }
        if (!rc) {
            stage *st = &r->st[r->n];
            memset(st, 0, sizeof *st);
            st->cmd = cmd;
            snprintf(st->where, sizeof st->where, "%s", where);
            rc = split_words(colon + 1, &sc, where, &st->args);
            r->n++;
        }
        free(line.p);
    }
    free(text);
    if (!rc && r->n == 0) rc = ag_err("%s: the recipe has no stages", r->path);
    return rc;
}

/* ---- finding a recipe ----------------------------------------------------------------- */

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Folders that hold the built-in recipes, in order: $ARGENT_RECIPES, next to the program
 * (build folders inside the source tree: ../jobs/recipes), and this source file's own
 * folder as the compiler saw it. */
static int recipe_dirs(char dirs[][PATH_CAP], int max) {
    int n = 0;
    const char *env = getenv("ARGENT_RECIPES");
    if (env && *env && n < max) snprintf(dirs[n++], PATH_CAP, "%s", env);
    char exe[PATH_CAP];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        const char *rel[] = {"jobs/recipes", "../jobs/recipes", "../share/argent/recipes", "../../jobs/recipes"};
        for (int i = 0; i < 4 && n < max; i++) n += !pathf(dirs[n], PATH_CAP, "%s/%s", exe, rel[i]);
    }
    char src[PATH_CAP];
    snprintf(src, sizeof src, "%s", __FILE__);
    char *slash = strrchr(src, '/');
    if (slash && n < max) {
        *slash = 0;
        n += !pathf(dirs[n], PATH_CAP, "%s/recipes", src);
    }
    return n;
}

static int recipe_find(const char *arg, recipe *r) {
    if (is_file(arg) || strchr(arg, '/')) {
        if (!is_file(arg)) return ag_err("%s: no such recipe file", arg);
        snprintf(r->path, sizeof r->path, "%s", arg);
    } else {
        char dirs[8][PATH_CAP];
        int nd = recipe_dirs(dirs, 8), found = 0;
        for (int i = 0; i < nd && !found; i++) {
            found = !pathf(r->path, sizeof r->path, "%s/%s.recipe", dirs[i], arg) && is_file(r->path);
        }
        if (!found) return ag_err("recipe '%s': no file %s.recipe in the recipe folders (set ARGENT_RECIPES, or give a "
                                  "path; argent pipeline --list shows the built-in recipes)", arg, arg);
    }
    char real[PATH_MAX];
    if (realpath(r->path, real) && strlen(real) < sizeof r->path) snprintf(r->path, sizeof r->path, "%s", real);
    const char *b = strrchr(r->path, '/');
    if (pathf(r->name, sizeof r->name, "%s", b ? b + 1 : r->path)) return ag_err("%s: recipe name too long", r->path);
    size_t n = strlen(r->name);
    if (n > 7 && !strcmp(r->name + n - 7, ".recipe")) r->name[n - 7] = 0;
    snprintf(r->dir, sizeof r->dir, "%s", r->path);
    char *slash = strrchr(r->dir, '/');
    if (slash) *slash = 0;
    else snprintf(r->dir, sizeof r->dir, ".");
    return 0;
}

/* --list: the recipes (*.recipe, sorted) of the first recipe folder that exists, each with
 * its first comment line. */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void list_recipes(void) {
    char dirs[8][PATH_CAP];
    int nd = recipe_dirs(dirs, 8);
    for (int i = 0; i < nd; i++) {
        DIR *dh = opendir(dirs[i]);
        if (!dh) continue;
        strlist names = {0};
        struct dirent *de;
        while ((de = readdir(dh))) {
            size_t n = strlen(de->d_name);
            if (n > 7 && !strcmp(de->d_name + n - 7, ".recipe") && sl_push(&names, strndup(de->d_name, n - 7))) break;
        }
        closedir(dh);
        if (names.n) qsort(names.s, (size_t)names.n, sizeof *names.s, cmp_str);
        char real[PATH_MAX];
        printf("recipes in %s:\n", realpath(dirs[i], real) ? real : dirs[i]);
        for (int k = 0; k < names.n; k++) {
            char path[PATH_CAP + 16];
            FILE *f = pathf(path, sizeof path, "%s/%s.recipe", dirs[i], names.s[k]) ? NULL : fopen(path, "r");
            char line[512] = "";
            if (f) {
                while (fgets(line, sizeof line, f) && line[0] != '#') {
                }
                fclose(f);
            }
            char *t = line[0] == '#' ? trim(line + 1) : line;
            t[strcspn(t, "\n")] = 0;
            printf("  %-18s %s\n", names.s[k], t);
        }
        sl_free(&names);
        return;
    }
    printf("no recipe folder found (set ARGENT_RECIPES)\n");
}

/* ---- stage outputs and markers --------------------------------------------------------- */

/* The value of --name (or --name=value) in a stage's arguments; NULL when absent. */
static const char *opt_value(const strlist *a, const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < a->n; i++) {
        const char *w = a->s[i];
        if (w[0] != '-' || w[1] != '-' || strncmp(w + 2, name, n)) continue;
        if (w[2 + n] == '=') return w + 3 + n;
        if (w[2 + n] == 0 && i + 1 < a->n) return a->s[i + 1];
    }
    return NULL;
}

/* The k-th positional argument (a word that is neither an option nor an option's value). */
static const char *positional(const strlist *a, int k) {
    for (int i = 0; i < a->n; i++) {
        const char *w = a->s[i];
        if (w[0] == '-' && w[1] == '-') {
            if (!strchr(w, '=') && i + 1 < a->n && a->s[i + 1][0] != '-') i++;
            continue;
        }
        if (k-- == 0) return w;
    }
    return NULL;
}

/* What a complete stage leaves behind; 1 when it is there (or the stage names nothing). */
static int outputs_exist(const stage *st) {
    const char *c = st->cmd->name, *out = opt_value(&st->args, "out");
    char path[PATH_CAP];
    if (!strcmp(c, "train-bi") || !strcmp(c, "train-cross") || !strcmp(c, "tsdae") || !strcmp(c, "synth")) {
        if (!out) return 1;
        snprintf(path, sizeof path, "%s/%s", out, !strcmp(c, "synth") ? "done.json" : "model.h5");
        return is_file(path);
    }
    if (!strcmp(c, "label") || !strcmp(c, "encode")) return !out || is_file(out);
    if (!strcmp(c, "prepare")) return !out || opt_value(&st->args, "split") || is_file(out);
    if (!strcmp(c, "eval")) {
        const char *csv = opt_value(&st->args, "csv");
        return !csv || is_file(csv);
    }
    if (!strcmp(c, "import")) {
        const char *o = positional(&st->args, 1);
        return !o || is_file(o);
    }
    if (!strcmp(c, "export")) {
        const char *o = positional(&st->args, 1);
        return !o || is_dir(o);
    }
    return 1;
}

static int mkdir_p(const char *dir);

/* Create the folders the stage's outputs go into (prepare, label, eval --csv... write a file
 * into a folder they expect to exist). */
static int make_output_dirs(const stage *st) {
    const char *c = st->cmd->name, *paths[3] = {NULL, NULL, NULL};
    int dir_itself = !strcmp(c, "train-bi") || !strcmp(c, "train-cross") || !strcmp(c, "tsdae") || !strcmp(c, "synth");
    if (!strcmp(c, "import") || !strcmp(c, "export")) paths[0] = positional(&st->args, 1);
    else paths[0] = opt_value(&st->args, "out");
    paths[1] = opt_value(&st->args, "csv");
    paths[2] = opt_value(&st->args, "work");
    for (int k = 0; k < 3; k++) {
        if (!paths[k] || !*paths[k]) continue;
        char d[PATH_CAP];
        if (pathf(d, sizeof d, "%s", paths[k])) return -1;
        if (!(k == 0 && dir_itself) && !(k == 0 && !strcmp(c, "export"))) {
            char *slash = strrchr(d, '/');
            if (!slash) continue;
            *slash = 0;
        }
        if (*d && mkdir_p(d)) return -1;
    }
    return 0;
}

static void marker_path(const char *state, int i, const stage *st, char *out, size_t cap) {
    snprintf(out, cap, "%s/stage-%02d-%s.json", state, i + 1, st->cmd->name);
}

static json_t *args_json(const stage *st) {
    json_t *a = json_array();
    for (int i = 0; a && i < st->args.n; i++) json_array_append_new(a, json_string(st->args.s[i]));
    return a;
}

/* 1 and the seconds it took when the marker matches this stage's arguments. */
static int marker_matches(const char *path, const stage *st, double *seconds) {
    json_error_t je;
    json_t *m = json_load_file(path, 0, &je);
    if (!m) return 0;
    json_t *a = args_json(st);
    int ok = a && json_equal(json_object_get(m, "args"), a) &&
             json_is_string(json_object_get(m, "stage")) &&
             !strcmp(json_string_value(json_object_get(m, "stage")), st->cmd->name);
    json_t *s = json_object_get(m, "seconds");
    *seconds = json_is_number(s) ? json_number_value(s) : -1;
    json_decref(a);
    json_decref(m);
    return ok;
}

static int marker_write(const char *path, const stage *st, double seconds) {
    char tmp[PATH_CAP + 16], when[64];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    json_t *m = json_pack("{s:s, s:s, s:o, s:f, s:s}", "stage", st->cmd->name, "where", st->where, "args",
                          args_json(st), "seconds", seconds, "finished", when);
    if (!m) return ag_err("%s: out of memory", path);
    if (pathf(tmp, sizeof tmp, "%s.tmp", path)) {
        json_decref(m);
        return -1;
    }
    int rc = json_dump_file(m, tmp, JSON_INDENT(2)) ? ag_err("%s: cannot write", tmp) : 0;
    json_decref(m);
    if (!rc && rename(tmp, path)) rc = ag_err("%s: cannot rename into place: %s", path, strerror(errno));
    return rc;
}

static int mkdir_p(const char *dir) {
    char b[PATH_CAP];
    snprintf(b, sizeof b, "%s", dir);
    for (char *s = b + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(b, 0777) && errno != EEXIST) return ag_err("%s: cannot create directory: %s", b, strerror(errno));
            *s = '/';
        }
    if (mkdir(b, 0777) && errno != EEXIST) return ag_err("%s: cannot create directory: %s", b, strerror(errno));
    if (!is_dir(b)) return ag_err("%s: exists and is not a directory", b);
    return 0;
}

/* ---- running -------------------------------------------------------------------------- */

static void say(int rank, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(int rank, const char *fmt, ...) {
    if (rank) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "argent: pipeline: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
}

/* The stage's command line as one printable string (words with spaces quoted). */
static void cmdline(const stage *st, char *out, size_t cap) {
    size_t n = (size_t)snprintf(out, cap, "argent %s", st->cmd->name);
    for (int i = 0; i < st->args.n && n < cap; i++) {
        const char *w = st->args.s[i];
        int q = !*w || strpbrk(w, " \t'\"$\\#") != NULL;
        n += (size_t)snprintf(out + n, cap - n, q ? " '%s'" : " %s", w);
    }
}

/* Whether the stage's own arguments set --name (as "--name V" or "--name=V"). */
static int has_opt(const stage *st, const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < st->args.n; i++) {
        const char *a = st->args.s[i];
        if (a[0] == '-' && a[1] == '-' && !strncmp(a + 2, name, n) && (a[2 + n] == 0 || a[2 + n] == '=')) return 1;
    }
    return 0;
}

/* Run one stage on the ranks it needs; every rank returns the same exit code. The
 * pipeline's --device / --precision (when given) go to the stages that compute with a
 * model, unless the recipe's line sets them itself. */
static int run_stage(const stage *st, int rank, const char *device, const char *precision) {
    const char *extra[4];
    int nx = 0;
    if (st->cmd->device && device && !has_opt(st, "device")) { extra[nx++] = "--device"; extra[nx++] = device; }
    if (st->cmd->device && precision && !has_opt(st, "precision")) { extra[nx++] = "--precision"; extra[nx++] = precision; }
    int argc = st->args.n + 1 + nx;
    char **argv = calloc((size_t)argc + 1, sizeof *argv);
    int rc = 0, ok = argv != NULL;
    if (ok) {
        argv[0] = strdup(st->cmd->name);
        ok = argv[0] != NULL;
        for (int i = 0; ok && i < st->args.n; i++) ok = (argv[i + 1] = strdup(st->args.s[i])) != NULL;
        for (int i = 0; ok && i < nx; i++) ok = (argv[st->args.n + 1 + i] = strdup(extra[i])) != NULL;
    }
    if (!ok) rc = 1;
    else if (st->cmd->collective || rank == 0) rc = st->cmd->run(argc, argv);
    fflush(stdout);
    fflush(stderr);
    if (argv)
        for (int i = 0; i < argc; i++) free(argv[i]);
    free(argv);
    int all = 0;
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    /* 85 (checkpointed on a signal) wins over a plain failure only when nothing failed. */
    return all;
}

static const ag_cli_opt opts[] = {
    {"out", "DIR", "output folder of the run (sets $OUT; default: the recipe's, else argent-RECIPE)", NULL, 0},
    {"dry-run", NULL, "print the stages with their arguments and whether they would run; run nothing", NULL, 0},
    {"list", NULL, "list the built-in recipes", NULL, 0},
    {"no-report", NULL, "do not write the report at the end", NULL, 0},
    {"device", "D", "cpu, cuda or auto: passed to every stage that runs a model (default: the stages' auto)", NULL, 0},
    {"precision", "P", "fp32, bf16 or fp16: passed like --device (default: the stages' fp32)", NULL, 0},
    {0}};

int ag_cmd_pipeline(int argc, char **argv) {
    ag_cli c;
    int rc = ag_cli_parse(&c, "argent pipeline RECIPE [NAME=VALUE ...]",
                          "Run a recipe's stages in order in this MPI job (mpirun -np N argent pipeline ...), then write\n"
                          "OUT/report.md, OUT/results.csv and plots and print the results table. Running it again\n"
                          "skips the stages that completed and resumes the one that was interrupted. RECIPE is a file\n"
                          "or a built-in name (default, augmented-sbert, tsdae, domain-adaptation; see --list and\n"
                          "docs/pipelines.md). NAME=VALUE sets a recipe variable (DATA=../shared/data MODEL=DIR ...).\n"
                          "Exit codes: 0 done, 1 a stage failed, 2 bad usage, 85 stopped by a signal after a\n"
                          "checkpoint (run the same command again to resume).",
                          opts, argc, argv);
    if (rc) {
        if (rc < 0) fprintf(stderr, "argent pipeline: %s\n", ag_errmsg());
        return rc > 0 ? 0 : 2;
    }
    if (ag_cli_flag(&c, "list")) {
        list_recipes();
        ag_cli_free(&c);
        return 0;
    }
    vars over = {0}, rec = {0};
    recipe r;
    memset(&r, 0, sizeof r);
    const char *recipe_arg = NULL;
    rc = 0;
    for (int i = 0; i < c.npos && !rc; i++) {
        const char *a = c.pos[i], *eq = strchr(a, '=');
        if (eq && eq > a) {
            char nm[128];
            size_t n = (size_t)(eq - a);
            int valid = n < sizeof nm && is_name_start(a[0]);
            for (size_t k = 0; valid && k < n; k++) valid = is_name_char(a[k]);
            if (!valid) { rc = ag_err("'%s': expected NAME=VALUE with NAME a variable name", a); break; }
            memcpy(nm, a, n);
            nm[n] = 0;
            rc = vars_set(&over, nm, eq + 1);
        } else if (!recipe_arg) {
            recipe_arg = a;
        } else {
            rc = ag_err("unexpected argument '%s' (one RECIPE, then NAME=VALUE variables)", a);
        }
    }
    if (!rc && !recipe_arg) rc = ag_err("which recipe? (argent pipeline --list shows the built-in ones)");
    if (!rc && ag_cli_given(&c, "out")) rc = vars_set(&over, "OUT", ag_cli_str(&c, "out"));
    if (!rc) rc = recipe_find(recipe_arg, &r);
    const char *dev_opt = ag_cli_str(&c, "device"), *prec_opt = ag_cli_str(&c, "precision");
    ag_precision prec_v;
    if (!rc && dev_opt && strcmp(dev_opt, "cpu") && strcmp(dev_opt, "cuda") && strcmp(dev_opt, "auto"))
        rc = ag_err("--device '%s': unknown device, expected cpu, cuda or auto", dev_opt);
    if (!rc && prec_opt && ag_precision_parse(prec_opt, &prec_v)) rc = ag_err_ctx("--precision");
    if (!rc && prec_opt && prec_v != AG_PREC_FP32 && dev_opt && !strcmp(dev_opt, "cpu"))
        rc = ag_err("--precision %s: needs the GPU; --device cpu computes in fp32", prec_opt);
    if (rc) {
        fprintf(stderr, "argent pipeline: %s\n", ag_errmsg());
        vars_free(&over);
        ag_cli_free(&c);
        return 2;
    }

    /* MPI before any stage, owned here: the stages' ag_comm_finalize then leaves it running. */
    int inited = 0, provided = 0, rank = 0, size = 1, owns = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            fprintf(stderr, "argent pipeline: MPI_Init_thread failed\n");
            vars_free(&over);
            ag_cli_free(&c);
            return 1;
        }
        owns = 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    char out_default[PATH_CAP], np[32];
    snprintf(out_default, sizeof out_default, "argent-%s", r.name);
    snprintf(np, sizeof np, "%d", size);
    rc = vars_set(&rec, "OUT", out_default) || vars_set(&rec, "NP", np) || vars_set(&rec, "RECIPE", r.name) ||
         vars_set(&rec, "RECIPE_DIR", r.dir);
    if (!rc) rc = recipe_parse(&r, &rec, &over);
    const char *out = NULL;
    char state[PATH_CAP];
    if (!rc) {
        scope sc = {&over, &rec};
        out = scope_get(&sc, "OUT");
        snprintf(state, sizeof state, "%s/pipeline", out);
    }
    int code = 0;
    if (rc) {
        if (rank == 0) fprintf(stderr, "argent pipeline: %s\n", ag_errmsg());
        code = 2;
        goto done;
    }
    if (ag_cli_flag(&c, "dry-run")) {
        if (rank == 0) {
            printf("# %s: %d stages, OUT=%s, %d rank%s\n", r.path, r.n, out, size, size == 1 ? "" : "s");
            int fresh = 0;
            for (int i = 0; i < r.n; i++) {
                char mp[PATH_CAP + 64], line[8192];
                double sec;
                marker_path(state, i, &r.st[i], mp, sizeof mp);
                int done = !fresh && marker_matches(mp, &r.st[i], &sec) && outputs_exist(&r.st[i]);
                fresh |= !done;
                cmdline(&r.st[i], line, sizeof line);
                printf("%2d %-8s %s\n", i + 1, done ? "done" : "run", line);
            }
        }
        goto done;
    }
    rc = 0;
    if (rank == 0) rc = mkdir_p(state);
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rc) {
        if (rank == 0) fprintf(stderr, "argent pipeline: %s\n", ag_errmsg());
        code = 1;
        goto done;
    }
    say(rank, "%s: %d stages on %d rank%s, output in %s", r.path, r.n, size, size == 1 ? "" : "s", out);
    ag_report_stage *rs = calloc((size_t)r.n, sizeof *rs);
    int ran_before = 0, completed = 0;
    double t_pipe = MPI_Wtime();
    for (int i = 0; i < r.n && rs; i++) {
        stage *st = &r.st[i];
        char mp[PATH_CAP + 64], line[8192];
        double sec = -1;
        marker_path(state, i, st, mp, sizeof mp);
        cmdline(st, line, sizeof line);
        /* Rank 0 decides (it sees the same files as the others on a shared file system). */
        int skip = 0;
        if (rank == 0 && !ran_before) skip = marker_matches(mp, st, &sec) && outputs_exist(st);
        double bsec[2] = {skip, sec};
        MPI_Bcast(bsec, 2, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        skip = bsec[0] != 0;
        int is_eval = !strcmp(st->cmd->name, "eval");
        rs[i] = (ag_report_stage){i + 1, st->cmd->name, opt_value(&st->args, "out"),
                                  is_eval ? opt_value(&st->args, "csv") : NULL,
                                  is_eval ? opt_value(&st->args, "name") : NULL, bsec[1], skip};
        if (skip) {
            say(rank, "[%d/%d] %s: done in an earlier run (%.1f s), skipped", i + 1, r.n, st->cmd->name, bsec[1]);
            completed++;
            continue;
        }
        ran_before = 1;
        int mrc = 0;
        if (rank == 0) {
            remove(mp);
            mrc = make_output_dirs(st);
        }
        MPI_Bcast(&mrc, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (mrc) {
            if (rank == 0) fprintf(stderr, "argent pipeline: %s: %s\n", st->where, ag_errmsg());
            code = 1;
            break;
        }
        say(rank, "[%d/%d] %s", i + 1, r.n, line);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        int s_rc = run_stage(st, rank, ag_cli_str(&c, "device"), ag_cli_str(&c, "precision"));
        double dt = MPI_Wtime() - t0;
        rs[i].seconds = dt;
        if (s_rc) {
            if (s_rc == AG_EXIT_REQUEUE)
                say(rank, "[%d/%d] %s stopped after a checkpoint (exit %d): run the same command again to resume",
                    i + 1, r.n, st->cmd->name, s_rc);
            else
                say(rank, "[%d/%d] %s (%s) failed with exit code %d; fix the cause and run the same command again "
                    "(finished stages are skipped, this one resumes)", i + 1, r.n, st->cmd->name, st->where, s_rc);
            code = s_rc == AG_EXIT_USAGE ? AG_EXIT_FAIL : s_rc;
            break;
        }
        int wrc = 0;
        if (rank == 0) wrc = marker_write(mp, st, dt);
        MPI_Bcast(&wrc, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (wrc) {
            if (rank == 0) fprintf(stderr, "argent pipeline: %s\n", ag_errmsg());
            code = 1;
            break;
        }
        completed++;
        say(rank, "[%d/%d] %s done in %.1f s", i + 1, r.n, st->cmd->name, dt);
        /* A stop signal that came between stages: nothing to checkpoint, just stop here. */
        int sig = ag_signal_pending() != 0, any = 0;
        MPI_Allreduce(&sig, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (any && i + 1 < r.n) {
            say(rank, "stop signal received: stopping after stage %d of %d; run the same command again to continue",
                i + 1, r.n);
            code = AG_EXIT_REQUEUE;
            break;
        }
    }
    if (!rs) {
        code = 1;
    } else if (completed == r.n) {
        say(rank, "all %d stages complete (%.1f s this run)", r.n, MPI_Wtime() - t_pipe);
        if (rank == 0 && !ag_cli_flag(&c, "no-report")) {
            char title[512];
            snprintf(title, sizeof title, "argent pipeline %s", r.name);
            if (ag_report_write(out, title, rs, r.n, stdout)) {
                fprintf(stderr, "argent pipeline: report: %s\n", ag_errmsg());
                code = 1;
            }
        }
        MPI_Bcast(&code, 1, MPI_INT, 0, MPI_COMM_WORLD);
    }
    free(rs);
done:
    recipe_free(&r);
    vars_free(&over);
    vars_free(&rec);
    ag_cli_free(&c);
    if (owns) MPI_Finalize();
    return code;
}
