/* server/cli/train.c: `orthod train`: a fine-tuning (LoRA or full) or pretraining job in the
 * foreground, on the same engine code the daemon's jobs run (engine/train/train.h).
 * Progress: a one-line bar on a terminal (step, loss, grad norm, tokens/s, ETA), key=value
 * log lines otherwise. Ctrl-C (or SIGTERM) checkpoints the last completed step and exits
 * with status 130; `orthod train --resume DIR` continues from DIR's newest checkpoint with
 * the flags the job was started with (saved as DIR/train-args). Results go to DIR/final/:
 * adapter.gguf + PEFT files (LoRA) or model.gguf (full, from scratch). */
#include "cmd.h"

#include "../../common/opt.h"
#include "../../engine/train/train.h"
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARGS_FILE "train-args"
#define MAX_ARGS 256

struct train_opts {
    char *model, *data, *eval_data, *format, *chat_template, *method, *targets, *schedule, *out,
        *resume, *shape, *tokenizer, *device, *export_dtype;
    int max_seq_len, eval_split, rank, batch, micro_tokens, epochs, eval_every, ckpt_every,
        keep, threads;
    int64_t max_steps, warmup, seed;
    double alpha, lr, min_lr, beta1, beta2, adam_eps, wd, clip, init_std;
    bool rslora, recompute, bf16, from_scratch, tied, quiet, progress, no_progress, eval_only;
};

#define O(f) offsetof(struct train_opts, f)
static const struct opt_def defs[] = {
    {"model", OPT_STRING, O(model), NULL, 1, 0, NULL, 0, "PATH", "GGUF file or Hugging Face folder"},
    {"data", OPT_STRING, O(data), NULL, 1, 0, NULL, 0, "FILE",
     "training data: JSONL chat/prompt-completion, or text (--format text)"},
    {"eval-data", OPT_STRING, O(eval_data), NULL, 1, 0, NULL, 0, "FILE", "held-out data"},
    {"eval-split", OPT_INT, O(eval_split), "0", 0, 1000000, NULL, 0, "K",
     "hold out every K-th training sample for evaluation (0 = none)"},
    {"format", OPT_STRING, O(format), "auto", 1, 0, "auto|chat|completion|text", 0, "FMT",
     "data format"},
    {"chat-template", OPT_STRING, O(chat_template), NULL, 1, 0, NULL, 0, "NAME",
     "chatml|llama2|llama3|zephyr|plain (default: the model's)"},
    {"max-seq-len", OPT_INT, O(max_seq_len), "1024", 2, 1 << 20, NULL, 0, "N",
     "tokens per sample (longer ones are cut)"},
    {"method", OPT_STRING, O(method), "lora", 1, 0, "lora|full", 0, "M", "what is trained"},
    {"lora-rank", OPT_INT, O(rank), "8", 1, 4096, NULL, 0, "R", "LoRA rank"},
    {"lora-alpha", OPT_DOUBLE, O(alpha), "16", 1e-6, 1e6, NULL, 0, "A", "LoRA alpha"},
    {"lora-targets", OPT_STRING, O(targets), "q,k,v,o,gate,up,down", 1, 0, NULL, 0, "LIST",
     "layers with an adapter (also all, attn, mlp)"},
    {"rslora", OPT_BOOL, O(rslora), NULL, 1, 0, NULL, 0, NULL, "scale alpha/sqrt(r) (rsLoRA)"},
    {"lr", OPT_DOUBLE, O(lr), "2e-5", 1e-12, 10, NULL, 0, "X", "peak learning rate"},
    {"schedule", OPT_STRING, O(schedule), "constant", 1, 0, "constant|linear|cosine", 0, "S",
     "learning-rate schedule"},
    {"warmup-steps", OPT_INT64, O(warmup), "0", 0, 1e12, NULL, 0, "N", "linear warmup steps"},
    {"min-lr-ratio", OPT_DOUBLE, O(min_lr), "0", 0, 1, NULL, 0, "X", "decay floor (of --lr)"},
    {"beta1", OPT_DOUBLE, O(beta1), "0.9", 0, 0.999999, NULL, 0, "B", "AdamW beta1"},
    {"beta2", OPT_DOUBLE, O(beta2), "0.95", 0, 0.999999, NULL, 0, "B", "AdamW beta2"},
    {"adam-eps", OPT_DOUBLE, O(adam_eps), "1e-8", 1e-30, 1, NULL, 0, "E", "AdamW epsilon"},
    {"weight-decay", OPT_DOUBLE, O(wd), "0", 0, 10, NULL, 0, "W", "decoupled weight decay"},
    {"clip", OPT_DOUBLE, O(clip), "1.0", 0, 1e9, NULL, 0, "N", "global-norm clipping (0 = off)"},
    {"batch", OPT_INT, O(batch), "128", 1, 1 << 20, NULL, 0, "N", "effective batch, in samples"},
    {"micro-tokens", OPT_INT, O(micro_tokens), "4096", 2, 1 << 20, NULL, 0, "N",
     "tokens per packed micro-batch"},
    {"epochs", OPT_INT, O(epochs), "1", 1, 100000, NULL, 0, "N", "passes over the data"},
    {"max-steps", OPT_INT64, O(max_steps), "0", 0, 1e12, NULL, 0, "N",
     "optimizer steps (0 = --epochs decides)"},
    {"seed", OPT_INT64, O(seed), "42", 0, 9.2e18, NULL, 0, "S", "data order and initialization"},
    {"recompute", OPT_BOOL, O(recompute), NULL, 1, 0, NULL, 0, NULL,
     "recompute activations in backward (less memory)"},
    {"bf16", OPT_BOOL, O(bf16), NULL, 1, 0, NULL, 0, NULL, "full: BF16 compute, F32 masters"},
    {"from-scratch", OPT_BOOL, O(from_scratch), NULL, 1, 0, NULL, 0, NULL,
     "pretrain a new model of --shape with --tokenizer"},
    {"shape", OPT_STRING, O(shape), NULL, 1, 0, NULL, 0, "SPEC",
     "from scratch: dim=..,layers=..,heads=..,kv_heads=..,ffn=..,ctx=.."},
    {"tokenizer", OPT_STRING, O(tokenizer), NULL, 1, 0, NULL, 0, "GGUF",
     "from scratch: a GGUF file whose tokenizer the model uses"},
    {"tied", OPT_BOOL, O(tied), "true", 1, 0, NULL, 0, NULL,
     "from scratch: output projection tied to the embeddings"},
    {"init-std", OPT_DOUBLE, O(init_std), "0.02", 1e-9, 10, NULL, 0, "X", "from scratch: init std"},
    {"eval-every", OPT_INT, O(eval_every), "0", 0, 1 << 30, NULL, 0, "N",
     "steps between evaluations (0 = at the end)"},
    {"checkpoint-every", OPT_INT, O(ckpt_every), "0", 0, 1 << 30, NULL, 0, "N",
     "steps between checkpoints (0 = at the end and on Ctrl-C)"},
    {"keep-checkpoints", OPT_INT, O(keep), "2", 1, 1000, NULL, 0, "N", "newest checkpoints kept"},
    {"out", OPT_STRING, O(out), NULL, 1, 0, NULL, 0, "DIR", "checkpoints and results"},
    {"resume", OPT_STRING, O(resume), NULL, 1, 0, NULL, 0, "DIR",
     "continue the job in DIR from its newest checkpoint"},
    {"export-dtype", OPT_STRING, O(export_dtype), "f32", 1, 0, "f32|f16|bf16|q8_0|q4_0", 0, "T",
     "full/from scratch: dtype of the matrices in model.gguf"},
    {"threads", OPT_INT, O(threads), "0", 0, 512, NULL, 0, "N", "CPU threads (0 = all)"},
    {"device", OPT_STRING, O(device), "cpu", 1, 0, NULL, 0, "DEV", "cpu"},
    {"progress", OPT_BOOL, O(progress), NULL, 1, 0, NULL, 0, NULL,
     "a progress bar even when stderr is not a terminal"},
    {"no-progress", OPT_BOOL, O(no_progress), NULL, 1, 0, NULL, 0, NULL,
     "log lines even on a terminal"},
    {"eval-only", OPT_BOOL, O(eval_only), NULL, 1, 0, NULL, 0, NULL,
     "with --resume: print the held-out loss of the newest checkpoint and exit"},
    {"quiet", OPT_BOOL, O(quiet), NULL, 1, 0, NULL, 0, NULL, "only errors and the summary"},
};
#undef O
#define N_DEFS (sizeof defs / sizeof defs[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: orthod train --model PATH --data FILE.jsonl --out DIR [options]\n"
               "       orthod train --from-scratch --shape SPEC --tokenizer GGUF --data FILE.txt "
               "--format text --method full --out DIR\n"
               "       orthod train --resume DIR\n"
               "Fine-tunes (LoRA or full) or pretrains a model in the foreground. Ctrl-C writes a\n"
               "checkpoint and exits (status 130); --resume continues it. Results: DIR/final/.\n\n");
    opt_print_help(f, defs, N_DEFS);
}

/* The job the signal handler stops (the one piece of process state a handler may touch). */
static eng_train_t *volatile g_job;

static void on_signal(int sig)
{
    eng_train_t *t = g_job;
    if (t)
        eng_train_request_stop(t);
    signal(sig, SIG_DFL);   // a second Ctrl-C ends the process at once
}

/* --- progress -------------------------------------------------------------------------- */

struct progress {
    bool bar, quiet;
    int width;
    double last_draw;
    bool drawn;
};

static void fmt_dur(char *buf, size_t cap, double s)
{
    if (!(s >= 0) || s > 1e8)
        snprintf(buf, cap, "?");
    else if (s >= 3600)
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60)
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(buf, cap, "%.0fs", s);
}

static int on_event(void *ctx, const struct eng_train_event *ev)
{
    struct progress *p = ctx;
    char eta[32];
    switch (ev->kind) {
    case ENG_TRAIN_EV_STEP:
        if (p->quiet)
            break;
        fmt_dur(eta, sizeof eta, ev->eta_s);
        if (p->bar) {
            const double now = cli_now();
            if (ev->step != ev->total_steps && now - p->last_draw < 0.1)
                break;
            p->last_draw = now;
            const int w = 24;
            int fill = ev->total_steps > 0 ? (int)((double)w * ev->step / ev->total_steps) : 0;
            char bar[32];
            for (int i = 0; i < w; i++)
                bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
            bar[w] = '\0';
            fprintf(stderr, "\r\033[K%lld/%lld [%s] loss %.4f gnorm %.3f lr %.2g %.0f tok/s ETA %s",
                    (long long)ev->step, (long long)ev->total_steps, bar, ev->loss, ev->grad_norm,
                    ev->lr, ev->tokens_per_s, eta);
            p->drawn = true;
        } else {
            fprintf(stderr, "step=%lld/%lld epoch=%d loss=%.5f grad_norm=%.4f lr=%.4g "
                    "tokens_per_s=%.0f samples=%lld eta_s=%.0f\n", (long long)ev->step,
                    (long long)ev->total_steps, ev->epoch + 1, ev->loss, ev->grad_norm, ev->lr,
                    ev->tokens_per_s, (long long)ev->samples_seen, ev->eta_s);
        }
        break;
    case ENG_TRAIN_EV_EVAL:
        if (p->drawn)
            fputc('\n', stderr);
        p->drawn = false;
        fprintf(stderr, "eval step=%lld eval_loss=%.5f eval_ppl=%.3f\n", (long long)ev->step,
                ev->eval_loss, exp(ev->eval_loss));
        break;
    case ENG_TRAIN_EV_CHECKPOINT:
        if (p->quiet)
            break;
        if (p->drawn)
            fputc('\n', stderr);
        p->drawn = false;
        fprintf(stderr, "checkpoint step=%lld path=%s\n", (long long)ev->step, ev->path);
        break;
    default:
        break;
    }
    return 0;
}

/* --- saved arguments (for --resume DIR) ----------------------------------------------- */

static int mkdir_p(const char *dir)
{
    char p[1024];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return -1;
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return -1;
            *s = '/';
        }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Writes argv (one argument a line; none may contain a newline) to DIR/train-args. */
static int save_args(const char *dir, int argc, char **argv)
{
    char path[1100], tmp[1200];
    snprintf(path, sizeof path, "%s/" ARGS_FILE, dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    for (int i = 0; i < argc; i++) {
        if (strchr(argv[i], '\n') || !strcmp(argv[i], "--resume") ||
            (i > 0 && !strcmp(argv[i - 1], "--resume")))
            continue;
        fprintf(f, "%s\n", argv[i]);
    }
    int bad = ferror(f);
    if (fsync(fileno(f)) != 0)
        bad = 1;
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0)
        return -1;
    return 0;
}

/* Reads DIR/train-args into a heap argv (*args holds the text). */
static int load_args(const char *dir, char **text, char ***argv_out, int *argc_out)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/" ARGS_FILE, dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char *buf = malloc(65536);
    size_t n = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (!buf)
        return -1;
    buf[n] = '\0';
    char **av = calloc(MAX_ARGS, sizeof *av);
    int ac = 0;
    for (char *s = buf; av && *s && ac < MAX_ARGS;) {
        char *nl = strchr(s, '\n');
        if (nl)
            *nl = '\0';
        av[ac++] = s;
        if (!nl)
            break;
        s = nl + 1;
    }
    if (!av) {
        free(buf);
        return -1;
    }
    *text = buf;
    *argv_out = av;
    *argc_out = ac;
    return 0;
}

/* --- the job ----------------------------------------------------------------------------- */

static int parse_format(const char *s, enum eng_data_format *f)
{
    static const char *const names[] = {"auto", "chat", "completion", "text"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) {
            *f = (enum eng_data_format)i;
            return 0;
        }
    return -1;
}

static int run(struct train_opts *o, bool resuming)
{
    int status = 1, rc;
    struct errbuf eb = {{0}};
    eng_backend_t *be = NULL;
    eng_model_t *m = NULL;
    eng_train_data_t *train = NULL, *eval = NULL;
    eng_train_t *job = NULL;
    struct log_sink log = {.min = LOG_WARN};   // events are printed here, not logged twice
    const double t0 = cli_now();

    // model (or a new one to pretrain)
    if (o->from_scratch) {
        if (!o->shape || !o->tokenizer) {
            fprintf(stderr, "orthod train: --from-scratch needs --shape and --tokenizer\n");
            return 2;
        }
        struct eng_cpu_params cp = {.n_threads = o->threads, .log = log};
        if (strcmp(o->device, "cpu") != 0) {
            fprintf(stderr, "orthod train: training runs on the cpu device (not %s)\n", o->device);
            return 2;
        }
        if ((rc = eng_cpu_backend_new(&cp, &be)) < 0) {
            fprintf(stderr, "orthod train: cpu backend: %s\n", err_str(rc));
            return 1;
        }
        eng_gguf_t *tg, *g;
        if ((rc = eng_gguf_open(o->tokenizer, &tg, &eb)) < 0 ||
            (rc = eng_train_scratch_model(o->shape, tg, o->tied, (uint64_t)o->seed, &g, &eb)) < 0) {
            fprintf(stderr, "orthod train: %s\n", eb.msg);
            eng_backend_free(be);
            return rc == ERR_INVAL ? 2 : 1;
        }
        eng_gguf_free(tg);   // the new file holds copies of the tokenizer keys
        struct eng_model_params mp = {.be = be, .log = log};
        if ((rc = eng_model_from_gguf(g, &mp, &m, &eb)) < 0) {
            fprintf(stderr, "orthod train: %s\n", eb.msg);
            eng_backend_free(be);
            return 1;
        }
    } else {
        if (!o->model) {
            fprintf(stderr, "orthod train: --model is required (or --from-scratch)\n");
            return 2;
        }
        struct cli_model_spec spec = {.model = o->model, .device = o->device,
                                      .threads = o->threads};
        if ((status = cli_model_open(&spec, &be, &m)) != 0)
            return status;
        status = 1;
    }

    // data
    struct eng_data_opts dopt;
    eng_data_opts_default(&dopt);
    dopt.max_seq_len = o->max_seq_len;
    parse_format(o->format, &dopt.format);
    char tmpl[32];
    if (o->chat_template) {
        dopt.chat_template = o->chat_template;
    } else if (dopt.format != ENG_DATA_TEXT) {
        if (eng_train_chat_template_of(m, tmpl, sizeof tmpl) < 0) {
            fprintf(stderr, "orthod train: the model's chat template is of no known family; "
                            "name one with --chat-template chatml|llama2|llama3|zephyr|plain\n");
            goto out;
        }
        dopt.chat_template = tmpl;
    }
    const eng_vocab_t *voc = eng_model_vocab(m);
    if ((rc = eng_train_data_load(voc, o->data, &dopt, &train, &eb)) < 0) {
        fprintf(stderr, "orthod train: %s\n", eb.msg);
        goto out;
    }
    // the split defines the training set (also when --eval-data replaces the held-out set)
    if (o->eval_split > 0 && eng_train_data_split(train, o->eval_split, &eval) < 0) {
        fprintf(stderr, "orthod train: --eval-split %d leaves no held-out sample\n", o->eval_split);
        goto out;
    }
    if (o->eval_data) {
        eng_train_data_free(eval);
        eval = NULL;
        if ((rc = eng_train_data_load(voc, o->eval_data, &dopt, &eval, &eb)) < 0) {
            fprintf(stderr, "orthod train: %s\n", eb.msg);
            goto out;
        }
    }
    struct eng_train_data_stats ds;
    eng_train_data_stats(train, &ds);

    // the job
    struct eng_train_config cfg;
    eng_train_config_default(&cfg);
    cfg.method = !strcmp(o->method, "full") ? ENG_TRAIN_FULL : ENG_TRAIN_LORA;
    if (eng_lora_targets_parse(o->targets, &cfg.lora_targets) < 0) {
        fprintf(stderr, "orthod train: --lora-targets: '%s' is not a list of "
                        "q,k,v,o,gate,up,down (or all, attn, mlp)\n", o->targets);
        status = 2;
        goto out;
    }
    cfg.lora_rank = o->rank;
    cfg.lora_alpha = (float)o->alpha;
    cfg.lora_rslora = o->rslora;
    cfg.lr = (float)o->lr;
    eng_lr_schedule_parse(o->schedule, &cfg.schedule);
    cfg.warmup_steps = o->warmup;
    cfg.min_lr_ratio = (float)o->min_lr;
    cfg.beta1 = (float)o->beta1;
    cfg.beta2 = (float)o->beta2;
    cfg.eps = (float)o->adam_eps;
    cfg.weight_decay = (float)o->wd;
    cfg.clip_norm = (float)o->clip;
    cfg.batch_samples = o->batch;
    cfg.micro_batch_tokens = o->micro_tokens;
    cfg.epochs = o->epochs;
    cfg.max_steps = o->max_steps;
    cfg.seed = (uint64_t)o->seed;
    cfg.recompute = o->recompute;
    cfg.bf16_compute = o->bf16;
    cfg.from_scratch = o->from_scratch;
    cfg.init_std = (float)o->init_std;
    cfg.eval_every = o->eval_every;
    cfg.checkpoint_every = o->ckpt_every;
    cfg.keep_checkpoints = o->keep;
    if (snprintf(cfg.out_dir, sizeof cfg.out_dir, "%s", o->out) >= (int)sizeof cfg.out_dir) {
        fprintf(stderr, "orthod train: --out path too long\n");
        goto out;
    }
    struct progress pr = {.bar = (isatty(2) && !o->no_progress) || o->progress, .quiet = o->quiet};
    struct eng_train_callbacks cb = {.on_event = on_event, .ctx = &pr, .log = log};
    if ((rc = eng_train_new(m, &cfg, train, eval, &cb, &job, &eb)) < 0) {
        fprintf(stderr, "orthod train: %s\n", eb.msg);
        status = rc == ERR_INVAL ? 2 : 1;
        goto out;
    }
    if (resuming) {
        rc = eng_train_resume(job, NULL, &eb);
        if (rc == ERR_NOTFOUND) {
            fprintf(stderr, "orthod train: %s has no complete checkpoint; starting from step 0\n",
                    o->out);
        } else if (rc < 0) {
            fprintf(stderr, "orthod train: %s\n", eb.msg);
            goto out;
        }
    }
    struct eng_train_info info;
    eng_train_info(job, &info);
    if (!o->quiet)
        fprintf(stderr, "train: method=%s trainable=%lld samples=%lld tokens=%lld supervised=%lld "
                "truncated=%lld steps=%lld batch=%d micro_tokens=%d params_mib=%.1f acts_mib=%.1f "
                "%s\n", o->from_scratch ? "scratch" : o->method, (long long)info.n_trainable,
                (long long)ds.n_samples, (long long)ds.n_tokens, (long long)ds.n_supervised,
                (long long)ds.n_truncated, (long long)info.total_steps, o->batch, o->micro_tokens,
                (double)info.param_bytes / 1048576.0, (double)info.act_bytes / 1048576.0,
                eng_backend_describe(be));
    if (o->eval_only) {
        double l;
        if (!eval) {
            fprintf(stderr, "orthod train: --eval-only needs --eval-data or --eval-split\n");
            status = 2;
            goto out;
        }
        if ((rc = eng_train_eval(job, eval, &l, &eb)) < 0) {
            fprintf(stderr, "orthod train: %s\n", eb.msg);
            goto out;
        }
        printf("step=%lld eval_loss=%.6f eval_ppl=%.4f\n", (long long)info.step, l, exp(l));
        status = 0;
        goto out;
    }
    g_job = job;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    rc = eng_train_run(job, &eb);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    g_job = NULL;
    if (pr.drawn)
        fputc('\n', stderr);
    eng_train_info(job, &info);
    if (rc == ERR_CANCELLED) {
        fprintf(stderr, "train: stopped at step %lld of %lld; checkpoint written. Continue with: "
                "orthod train --resume %s\n", (long long)info.step, (long long)info.total_steps,
                o->out);
        status = 130;
        goto out;
    }
    if (rc < 0) {
        fprintf(stderr, "orthod train: %s\n", eb.msg[0] ? eb.msg : err_str(rc));
        goto out;
    }
    char fin[1100];
    snprintf(fin, sizeof fin, "%s/final", o->out);
    struct eng_train_export_opts xo = {0};
    eng_dtype_parse(o->export_dtype, &xo.model_dtype);
    if ((rc = eng_train_export(job, fin, &xo, &eb)) < 0) {
        fprintf(stderr, "orthod train: export: %s\n", eb.msg);
        goto out;
    }
    fprintf(stderr, "train: done steps=%lld loss=%.5f grad_norm=%.4f eval_loss=%.5f "
            "seconds=%.1f results=%s\n", (long long)info.step, info.last_loss,
            info.last_grad_norm, info.last_eval_loss, cli_now() - t0, fin);
    status = 0;
out:
    eng_train_free(job);
    eng_train_data_free(train);
    eng_train_data_free(eval);
    cli_model_close(be, m);
    return status;
}

int cmd_train(int argc, char **argv)
{
    struct train_opts o = {0};
    struct errbuf eb = {{0}};
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    int npos = 0, status = 2;
    char *saved_text = NULL;
    char **saved = NULL;
    int n_saved = 0;
    // --resume DIR: the saved flags first, then the ones given now (which win)
    const char *resume = NULL;
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--resume"))
            resume = argv[i + 1];
    if (opt_defaults(defs, N_DEFS, &o, &eb) < 0)
        goto bad;
    if (resume) {
        if (load_args(resume, &saved_text, &saved, &n_saved) < 0) {
            fprintf(stderr, "orthod train: --resume %s: no %s there (not a job's output "
                            "directory?)\n", resume, ARGS_FILE);
            goto done;
        }
        if (opt_parse_argv(defs, N_DEFS, &o, n_saved, saved, &npos, NULL, &eb) < 0)
            goto bad;
    }
    if (opt_parse_argv(defs, N_DEFS, &o, argc, argv, &npos, NULL, &eb) < 0)
        goto bad;
    if (npos > 0) {
        fprintf(stderr, "orthod train: unexpected argument '%s'\n", argv[0]);
        goto done;
    }
    if (resume) {   // the job's directory is where it is now
        free(o.out);
        o.out = strdup(resume);
    }
    if (!o.data || !o.out) {
        fprintf(stderr, "orthod train: %s is required (see --help)\n", !o.data ? "--data" : "--out");
        goto done;
    }
    if (o.from_scratch && strcmp(o.method, "full") != 0) {
        fprintf(stderr, "orthod train: --from-scratch trains every weight: add --method full\n");
        goto done;
    }
    char ap[1100];
    snprintf(ap, sizeof ap, "%s/" ARGS_FILE, o.out);
    if (!resume && access(ap, F_OK) == 0) {   // never overwrite another job silently
        fprintf(stderr, "orthod train: %s already holds a job; continue it with orthod train "
                        "--resume %s, or pick another --out\n", o.out, o.out);
        goto done;
    }
    if (mkdir_p(o.out) != 0) {
        fprintf(stderr, "orthod train: cannot create --out %s: %s\n", o.out, strerror(errno));
        status = 1;
        goto done;
    }
    if (o.eval_only && !resume) {
        fprintf(stderr, "orthod train: --eval-only evaluates a job: give --resume DIR\n");
        goto done;
    }
    if (!resume && save_args(o.out, argc, argv) < 0) {
        fprintf(stderr, "orthod train: cannot write %s/%s\n", o.out, ARGS_FILE);
        status = 1;
        goto done;
    }
    status = run(&o, resume != NULL);
    goto done;
bad:
    fprintf(stderr, "orthod train: %s\n", eb.msg);
done:
    opt_free(defs, N_DEFS, &o);
    free(saved);
    free(saved_text);
    return status;
}
