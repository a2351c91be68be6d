/* engine/train/ckpt.c: checkpoints of a training job, and the atomic file writes the
 * exports share.
 *
 * A checkpoint is a directory out_dir/checkpoint-<step>/ holding state.gguf: every trainable
 * tensor's F32 weights (its own name), AdamW moments (name + ".m", ".v"), and metadata
 * orthod.train.* (format version, method, LoRA shape, step, epoch, data position, samples
 * and tokens seen, RNG state, seed, dataset size, last loss). LoRA checkpoints also hold
 * the adapter files (export.c) so that each one is usable as is.
 * Atomic: everything is written into out_dir/.tmp-checkpoint-<step>, each file fsynced,
 * the directory fsynced, renamed to its final name, and out_dir fsynced; a crash leaves
 * either the complete checkpoint or none (the temp directory is removed at the next save).
 * Older checkpoints beyond keep_checkpoints are removed after the new one is durable. */
#include "train_impl.h"

#include "../../common/text.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_VERSION 1
#define CKPT_PREFIX "checkpoint-"
#define CKPT_FILE "state.gguf"

int trn_write_atomic(const char *path, const void *const *parts, const size_t *sizes, int n,
                     struct errbuf *eb);
int trn_export_lora(eng_train_t *t, const char *dir, const char *base_name, struct errbuf *eb);

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

/* The parent directory of path into buf ("." if none). */
static void parent_of(const char *path, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", path);
    char *s = strrchr(buf, '/');
    if (!s)
        snprintf(buf, cap, ".");
    else if (s == buf)
        s[1] = '\0';
    else
        *s = '\0';
}

int trn_write_atomic(const char *path, const void *const *parts, const size_t *sizes, int n,
                     struct errbuf *eb)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return err_set(eb, ERR_INVAL, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_set(eb, ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    int e = 0;
    for (int i = 0; i < n && !e; i++) {
        const char *p = parts[i];
        size_t left = sizes[i];
        while (left > 0) {
            ssize_t w = write(fd, p, left);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                e = w < 0 ? errno : EIO;
                break;
            }
            p += w;
            left -= (size_t)w;
        }
    }
    if (!e && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
    if (!e && rename(tmp, path) != 0)
        e = errno;
    if (e) {
        unlink(tmp);
        return err_set(eb, ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    parent_of(path, dir, sizeof dir);
    if (fsync_dir(dir) != 0)
        return err_set(eb, ERR_IO, "%s: written, but syncing its directory failed: %s", path,
                       strerror(errno));
    return 0;
}

/* rm -r of a directory we created (plain files inside, no recursion needed beyond one
 * level). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        char p[PATH_MAX];
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) < (int)sizeof p)
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int mkdir_p(const char *dir)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return -1;
            *s = '/';
        }
    }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Steps of the complete checkpoints in out_dir (ascending); returns the count. */
static int list_ckpts(const char *out_dir, int64_t *steps, int cap)
{
    DIR *d = opendir(out_dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, CKPT_PREFIX, strlen(CKPT_PREFIX)))
            continue;
        char *end;
        const char *num = de->d_name + strlen(CKPT_PREFIX);
        long long s = strtoll(num, &end, 10);
        if (end == num || *end || s < 0)
            continue;
        char f[PATH_MAX];
        struct stat st;
        if (snprintf(f, sizeof f, "%s/%s/" CKPT_FILE, out_dir, de->d_name) >= (int)sizeof f ||
            stat(f, &st) != 0)
            continue;
        if (n < cap)
            steps[n++] = s;
    }
    closedir(d);
    for (int i = 1; i < n; i++)   // insertion sort
        for (int k = i; k > 0 && steps[k - 1] > steps[k]; k--) {
            int64_t x = steps[k];
            steps[k] = steps[k - 1];
            steps[k - 1] = x;
        }
    return n;
}

int trn_ckpt_latest(const char *out_dir, char *path, size_t cap)
{
    int64_t steps[1024];
    int n = list_ckpts(out_dir, steps, 1024);
    if (n == 0)
        return ERR_NOTFOUND;
    snprintf(path, cap, "%s/" CKPT_PREFIX "%lld", out_dir, (long long)steps[n - 1]);
    return 0;
}

static void free_ptr(void *p)
{
    free(p);
}

int trn_ckpt_save(eng_train_t *t, char *path, size_t cap, struct errbuf *eb)
{
    const char *od = t->cfg.out_dir;
    char tmp[PATH_MAX], fin[PATH_MAX], file[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s/.tmp-" CKPT_PREFIX "%lld", od, (long long)t->step) >=
            (int)sizeof tmp ||
        snprintf(fin, sizeof fin, "%s/" CKPT_PREFIX "%lld", od, (long long)t->step) >=
            (int)sizeof fin ||
        snprintf(file, sizeof file, "%s/" CKPT_FILE, tmp) >= (int)sizeof file)
        return err_set(eb, ERR_INVAL, "output directory path too long");
    if (mkdir_p(od) != 0)
        return err_set(eb, ERR_IO, "cannot create output directory %s: %s", od, strerror(errno));
    remove_dir(tmp);   // a previous crash's leftovers
    if (mkdir(tmp, 0755) != 0)
        return err_set(eb, ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    eng_gguf_t *g;
    int rc = eng_gguf_new(&g);
    if (rc < 0)
        return rc;
    const struct eng_train_config *c = &t->cfg;
    struct eng_train_data_stats ds;
    eng_train_data_stats(t->train, &ds);
    if ((rc = eng_gguf_set_u32(g, "orthod.train.version", CKPT_VERSION)) < 0 ||
        (rc = eng_gguf_set_u32(g, "orthod.train.method", (uint32_t)c->method)) < 0 ||
        (rc = eng_gguf_set_u32(g, "orthod.train.lora_rank", (uint32_t)t->R)) < 0 ||
        (rc = eng_gguf_set_u32(g, "orthod.train.lora_targets",
                               c->method == ENG_TRAIN_LORA ? c->lora_targets : 0)) < 0 ||
        (rc = eng_gguf_set_f32(g, "orthod.train.lora_alpha", c->lora_alpha)) < 0 ||
        (rc = eng_gguf_set_bool(g, "orthod.train.lora_rslora", c->lora_rslora)) < 0 ||
        (rc = eng_gguf_set_u64(g, "orthod.train.step", (uint64_t)t->step)) < 0 ||
        (rc = eng_gguf_set_u64(g, "orthod.train.total_steps", (uint64_t)t->total_steps)) < 0 ||
        (rc = eng_gguf_set_u32(g, "orthod.train.epoch", (uint32_t)t->epoch)) < 0 ||
        (rc = eng_gguf_set_u64(g, "orthod.train.pos", (uint64_t)t->pos)) < 0 ||
        (rc = eng_gguf_set_u64(g, "orthod.train.samples_seen", (uint64_t)t->samples_seen)) < 0 ||
        (rc = eng_gguf_set_u64(g, "orthod.train.tokens_seen", (uint64_t)t->tokens_seen)) < 0 ||
        (rc = eng_gguf_set_u64(g, "orthod.train.rng", t->rng)) < 0 ||
        (rc = eng_gguf_set_u64(g, "orthod.train.seed", c->seed)) < 0 ||
        (rc = eng_gguf_set_u64(g, "orthod.train.n_samples", (uint64_t)ds.n_samples)) < 0 ||
        (rc = eng_gguf_set_u64(g, "orthod.train.n_tokens", (uint64_t)ds.n_tokens)) < 0 ||
        (rc = eng_gguf_set_u64(g, "orthod.train.batch_samples", (uint64_t)c->batch_samples)) < 0 ||
        (rc = eng_gguf_set_f32(g, "orthod.train.last_loss", (float)t->last_loss)) < 0 ||
        (rc = eng_gguf_set_f32(g, "orthod.train.elapsed_s", (float)t->elapsed_before)) < 0)
        goto out;
    for (int i = 0; i < t->n_params && rc == 0; i++) {
        const struct trn_param *p = &t->params[i];
        const int64_t n = trn_param_n(p);
        float *const *src[3] = {&p->w, &p->m, &p->v};
        static const char *const suf[3] = {"", ".m", ".v"};
        for (int k = 0; k < 3 && rc == 0; k++) {
            float *h = malloc((size_t)n * sizeof(float));
            if (!h || (rc = eng_gguf_hold(g, h, free_ptr)) < 0) {
                free(h);
                rc = ERR_NOMEM;
                break;
            }
            char name[TRN_NAME_MAX + 4];
            snprintf(name, sizeof name, "%s%s", p->name, suf[k]);
            const int64_t ne[2] = {p->ne0, p->ne1};
            if ((rc = trn_dev_get(t, *src[k], h, n)) == 0)
                rc = eng_gguf_add_tensor(g, name, ENG_DTYPE_F32, 2, ne, h,
                                         (size_t)n * sizeof(float));
        }
    }
    if (rc < 0) {
        err_set(eb, rc, "checkpoint: cannot collect the state: %s", err_str(rc));
        goto out;
    }
    if ((rc = eng_gguf_write(g, file, eb)) < 0)
        goto out;
    if (c->method == ENG_TRAIN_LORA && (rc = trn_export_lora(t, tmp, NULL, eb)) < 0)
        goto out;
    if (fsync_dir(tmp) != 0) {
        rc = err_set(eb, ERR_IO, "cannot sync %s: %s", tmp, strerror(errno));
        goto out;
    }
    remove_dir(fin);   // re-saving the same step (resume then stop at once)
    if (rename(tmp, fin) != 0 || fsync_dir(od) != 0) {
        rc = err_set(eb, ERR_IO, "cannot move the checkpoint into place at %s: %s", fin,
                     strerror(errno));
        goto out;
    }
    // prune the oldest
    int64_t steps[1024];
    int n = list_ckpts(od, steps, 1024);
    for (int i = 0; i + c->keep_checkpoints < n; i++) {
        char old[PATH_MAX];
        if (steps[i] != t->step &&
            snprintf(old, sizeof old, "%s/" CKPT_PREFIX "%lld", od, (long long)steps[i]) <
                (int)sizeof old)
            remove_dir(old);
    }
    if (path)
        snprintf(path, cap, "%s", fin);
    log_info(&t->cb.log, "msg=\"checkpoint\" step=%lld path=\"%s\"", (long long)t->step, fin);
out:
    eng_gguf_free(g);
    if (rc < 0)
        remove_dir(tmp);
    return rc;
}

static int get_u64(const eng_gguf_t *g, const char *k, uint64_t *v, struct errbuf *eb)
{
    int rc = eng_gguf_get_u64(g, k, v);
    return rc < 0 ? err_set(eb, ERR_CORRUPT, "checkpoint lacks '%s'", k) : 0;
}

int trn_ckpt_load(eng_train_t *t, const char *dir, struct errbuf *eb)
{
    char file[PATH_MAX], ed[256];
    text_escape(ed, sizeof ed, dir, strlen(dir), TEXT_MESSAGE);
    if (snprintf(file, sizeof file, "%s/" CKPT_FILE, dir) >= (int)sizeof file)
        return err_set(eb, ERR_INVAL, "checkpoint path too long");
    eng_gguf_t *g;
    int rc = eng_gguf_open(file, &g, eb);
    if (rc < 0)
        return err_prefix(eb, rc, "checkpoint %s", ed);
    const struct eng_train_config *c = &t->cfg;
    uint32_t ver = 0, method = 0, rank = 0, targets = 0, epoch = 0;
    uint64_t step, total, pos, ss, ts, rng, seed, ns;
    struct eng_train_data_stats ds;
    eng_train_data_stats(t->train, &ds);
    if (eng_gguf_get_u32(g, "orthod.train.version", &ver) < 0 || ver != CKPT_VERSION) {
        rc = err_set(eb, ERR_CORRUPT, "%s is not an orthod training checkpoint (version %u)", ed,
                     ver);
        goto out;
    }
    if ((rc = eng_gguf_get_u32(g, "orthod.train.method", &method)) < 0 ||
        (rc = eng_gguf_get_u32(g, "orthod.train.lora_rank", &rank)) < 0 ||
        (rc = eng_gguf_get_u32(g, "orthod.train.lora_targets", &targets)) < 0 ||
        (rc = eng_gguf_get_u32(g, "orthod.train.epoch", &epoch)) < 0) {
        rc = err_set(eb, ERR_CORRUPT, "checkpoint %s: metadata incomplete", ed);
        goto out;
    }
    if ((rc = get_u64(g, "orthod.train.step", &step, eb)) < 0 ||
        (rc = get_u64(g, "orthod.train.total_steps", &total, eb)) < 0 ||
        (rc = get_u64(g, "orthod.train.pos", &pos, eb)) < 0 ||
        (rc = get_u64(g, "orthod.train.samples_seen", &ss, eb)) < 0 ||
        (rc = get_u64(g, "orthod.train.tokens_seen", &ts, eb)) < 0 ||
        (rc = get_u64(g, "orthod.train.rng", &rng, eb)) < 0 ||
        (rc = get_u64(g, "orthod.train.seed", &seed, eb)) < 0 ||
        (rc = get_u64(g, "orthod.train.n_samples", &ns, eb)) < 0)
        goto out;
    if (method != (uint32_t)c->method || rank != (uint32_t)t->R ||
        targets != (c->method == ENG_TRAIN_LORA ? c->lora_targets : 0)) {
        rc = err_set(eb, ERR_CORRUPT, "checkpoint %s was made with another method or LoRA shape "
                     "(method %u rank %u targets 0x%x)", ed, method, rank, targets);
        goto out;
    }
    if (ns != (uint64_t)ds.n_samples || seed != c->seed) {
        rc = err_set(eb, ERR_CORRUPT, "checkpoint %s was made on another dataset or seed "
                     "(%llu samples, seed %llu; now %lld samples, seed %llu)", ed,
                     (unsigned long long)ns, (unsigned long long)seed, (long long)ds.n_samples,
                     (unsigned long long)c->seed);
        goto out;
    }
    if (pos > ns || step > ((uint64_t)1 << 40)) {
        rc = err_set(eb, ERR_CORRUPT, "checkpoint %s: data position out of range", ed);
        goto out;
    }
    if (eng_gguf_n_tensors(g) != 3 * (int64_t)t->n_params) {
        rc = err_set(eb, ERR_CORRUPT, "checkpoint %s holds %lld tensors, the job has %d", ed,
                     (long long)eng_gguf_n_tensors(g), 3 * t->n_params);
        goto out;
    }
    for (int i = 0; i < t->n_params && rc == 0; i++) {
        struct trn_param *p = &t->params[i];
        float *dst[3] = {p->w, p->m, p->v};
        static const char *const suf[3] = {"", ".m", ".v"};
        for (int k = 0; k < 3 && rc == 0; k++) {
            char name[TRN_NAME_MAX + 4];
            snprintf(name, sizeof name, "%s%s", p->name, suf[k]);
            int64_t ti = eng_gguf_find_tensor(g, name);
            struct eng_gguf_tensor gt;
            if (ti >= 0)
                eng_gguf_tensor_at(g, ti, &gt);
            if (ti < 0 || gt.dtype != ENG_DTYPE_F32 || gt.ne[0] != p->ne0 || gt.ne[1] != p->ne1) {
                rc = err_set(eb, ERR_CORRUPT, "checkpoint %s: tensor '%s' is missing or has "
                             "another shape", ed, name);
                break;
            }
            rc = trn_dev_set(t, dst[k], gt.data, trn_param_n(p));
        }
    }
    if (rc == 0)
        rc = trn_sync_bf16(t);
    if (rc < 0)
        goto out;
    t->step = (int64_t)step;
    t->epoch = (int32_t)epoch;
    t->pos = (int64_t)pos;
    t->samples_seen = (int64_t)ss;
    t->tokens_seen = (int64_t)ts;
    t->rng = rng;
    float f;
    if (eng_gguf_get_f32(g, "orthod.train.last_loss", &f) == 0)
        t->last_loss = f;
    if (eng_gguf_get_f32(g, "orthod.train.elapsed_s", &f) == 0 && f >= 0)
        t->elapsed_before = f;
    t->perm_epoch = -1;
    log_info(&t->cb.log, "msg=\"resumed\" step=%lld epoch=%u checkpoint=\"%s\"", (long long)step,
             epoch, ed);
out:
    eng_gguf_free(g);
    return rc;
}
