/* server/cli/main.c: the `orthod` binary: picks the subcommand and hands it the remaining
 * arguments (server/cli/cmd.h). The only file that decides the process exit status.
 * serve and config need the server libraries; without them (-Dserver=disabled) they say so. */
#include "cmd.h"

#include "orthod_config.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: orthod COMMAND [flags]\n"
               "orthod serves and fine-tunes language models.\n\n"
               "commands:\n"
               "  serve      serve a model over an OpenAI-compatible HTTP API\n"
               "  generate   complete one prompt on the command line\n"
               "  tokenize   print the token ids of a text\n"
               "  bench      measure prefill and decode speed\n"
               "  train      fine-tune (LoRA or full) or pretrain a model\n"
               "  config     print the effective configuration\n\n"
               "  --version  print the version and the features compiled in\n"
               "  --help     this text; `orthod COMMAND --help` for a command's flags\n");
}

static void version(void)
{
    printf("orthod %s (git %s)\n", ORTHOD_VERSION, ORTHOD_GIT_REV);
    printf("features: server=%s cuda=%s systemd=%s jansson=%s utf8proc=%s\n",
           ORTHOD_HAVE_SERVER ? "yes" : "no", ORTHOD_HAVE_CUDA ? "yes" : "no",
           ORTHOD_HAVE_SYSTEMD ? "yes" : "no", ORTHOD_HAVE_JANSSON ? "yes" : "no",
           ORTHOD_HAVE_UTF8PROC ? "yes" : "no");
}

int main(int argc, char **argv)
{
    // the daemon's stop and reload signals wait (blocked, pending) until its event loop can
    // handle them: without this a SIGTERM during start-up killed it by the signal
    if (argc >= 2 && strcmp(argv[1], "serve") == 0) {
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    }
    if (argc < 2) {
        fprintf(stderr, "orthod: missing command: serve, generate, tokenize, bench, train or config "
                        "(see orthod --help for usage)\n");
        return 2;
    }
    const char *cmd = argv[1];
    int sub_argc = argc - 2;
    char **sub_argv = argv + 2;
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        version();
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "generate") == 0)
        return cmd_generate(sub_argc, sub_argv);
    if (strcmp(cmd, "tokenize") == 0)
        return cmd_tokenize(sub_argc, sub_argv);
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(sub_argc, sub_argv);
    if (strcmp(cmd, "train") == 0)
        return cmd_train(sub_argc, sub_argv);
    if (strcmp(cmd, "serve") == 0 || strcmp(cmd, "config") == 0) {
#if ORTHOD_HAVE_SERVER
        return cmd[0] == 's' ? cmd_serve(sub_argc, sub_argv) : cmd_config(sub_argc, sub_argv);
#else
        fprintf(stderr, "orthod %s: built without server support (-Dserver=disabled); install "
                        "libuv1-dev libmicrohttpd-dev libjansson-dev libinih-dev and rebuild\n",
                cmd);
        return 2;
#endif
    }
    if (cmd[0] == '-')
        fprintf(stderr, "orthod: unknown flag %.100s (see orthod --help)\n", cmd);
    else
        fprintf(stderr, "orthod: unknown command '%.100s' (see orthod --help)\n", cmd);
    return 2;
}
