/* server/cli/cmd.h: the orthod subcommands. main.c parses the subcommand name and hands the
 * remaining arguments (argv[0] is the first argument after the subcommand) to one of
 * these. Each returns the process exit status: 0 ok, 1 runtime failure, 2 usage error
 * (a one-line message naming the flag has been printed to stderr). */
#ifndef ORTHOD_SERVER_CLI_CMD_H
#define ORTHOD_SERVER_CLI_CMD_H

int cmd_serve(int argc, char **argv);      /* server/serve.c (needs the server libraries) */
int cmd_config(int argc, char **argv);     /* server/config.c */
int cmd_generate(int argc, char **argv);   /* server/cli/generate.c (engine only) */
int cmd_tokenize(int argc, char **argv);   /* server/cli/tokenize.c (engine only) */
int cmd_bench(int argc, char **argv);      /* server/cli/bench.c (engine only) */
int cmd_train(int argc, char **argv);      /* server/cli/train.c (engine only) */

#endif
