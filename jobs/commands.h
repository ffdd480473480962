/* The subcommands of `argent`, one per file in jobs/. Each takes argc/argv with argv[0]
 * being the command's name, prints its own --help, and returns the process exit code
 * (0 success, 1 failure with a message on stderr, 2 bad usage; see docs/formats.md). */
#ifndef ARGENT_JOBS_COMMANDS_H
#define ARGENT_JOBS_COMMANDS_H

int ag_cmd_demo(int argc, char **argv);
int ag_cmd_prepare(int argc, char **argv);   /* jobs/prepare.c */
int ag_cmd_import(int argc, char **argv);    /* jobs/import.c */
int ag_cmd_export(int argc, char **argv);    /* jobs/export.c */
int ag_cmd_train_bi(int argc, char **argv);  /* jobs/train_bi.c */
int ag_cmd_eval(int argc, char **argv);      /* jobs/eval.c */
int ag_cmd_encode(int argc, char **argv);    /* jobs/encode.c */
int ag_cmd_train_cross(int argc, char **argv); /* jobs/train_cross.c */
int ag_cmd_label(int argc, char **argv);     /* jobs/label.c */
int ag_cmd_tsdae(int argc, char **argv);     /* jobs/tsdae.c */
int ag_cmd_pipeline(int argc, char **argv);  /* jobs/pipeline.c */
int ag_cmd_synth(int argc, char **argv);     /* jobs/synth.c */

#endif
