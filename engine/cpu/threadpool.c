/* engine/cpu/threadpool.c: a fork-join pool of spinning workers for per-op parallelism.
 * Each op of a forward step is one eng_tp_run: workers spin briefly between ops (ops come
 * back to back within a step) and sleep on a condition variable when idle longer. */
#include "cpu.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Waiting: spin briefly (ops of a step come back to back, microseconds apart), then yield
 * the core on every check (another thread may need it: with more runnable threads than
 * cores a pure spinner stalls the thread it waits for), then sleep on the condvar. */
#define SPIN_PAUSES 4096          /* ~100 us of PAUSE before yielding */
#define YIELDS_BEFORE_SLEEP 2000  /* ~ms of sched_yield before a worker sleeps */

struct worker {
    eng_tp_t *tp;
    int ith;
    pthread_t thread;
};

struct eng_tp {
    int n;
    struct worker *workers;        /* n - 1 workers; the caller is thread 0 */
    eng_tp_fn fn;
    void *arg;
    _Atomic unsigned gen;          /* bumped to start a run */
    _Atomic int pending;           /* workers still running the current run */
    _Atomic bool stop;
    _Atomic int n_sleeping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* barrier */
    _Atomic int bar_count;
    _Atomic unsigned bar_gen;
};

static void *worker_main(void *p)
{
    struct worker *w = p;
    eng_tp_t *tp = w->tp;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&tp->gen, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&tp->stop, memory_order_acquire)) {
            if (++spins < SPIN_PAUSES) {
                CPU_RELAX();
                continue;
            }
            if (spins < SPIN_PAUSES + YIELDS_BEFORE_SLEEP) {
                sched_yield();
                continue;
            }
            pthread_mutex_lock(&tp->mu);
            atomic_fetch_add(&tp->n_sleeping, 1);
            while (atomic_load(&tp->gen) == seen && !atomic_load(&tp->stop))
                pthread_cond_wait(&tp->cv, &tp->mu);
            atomic_fetch_sub(&tp->n_sleeping, 1);
            pthread_mutex_unlock(&tp->mu);
            spins = 0;
        }
        if (atomic_load_explicit(&tp->stop, memory_order_acquire))
            return NULL;
        seen = g;
        tp->fn(tp->arg, w->ith, tp->n);
        atomic_fetch_sub_explicit(&tp->pending, 1, memory_order_acq_rel);
    }
}

int eng_tp_new(int n_threads, eng_tp_t **out)
{
    if (n_threads < 1 || n_threads > 1024)
        return ERR_INVAL;
    eng_tp_t *tp = calloc(1, sizeof *tp);
    if (!tp)
        return ERR_NOMEM;
    tp->n = n_threads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    if (n_threads > 1) {
        tp->workers = calloc((size_t)n_threads - 1, sizeof *tp->workers);
        if (!tp->workers) {
            eng_tp_free(tp);
            return ERR_NOMEM;
        }
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker *w = &tp->workers[i - 1];
        w->tp = tp;
        w->ith = i;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            tp->n = i;          // only workers 1..i-1 exist
            eng_tp_free(tp);
            return ERR_NOMEM;
        }
    }
    *out = tp;
    return 0;
}

void eng_tp_free(eng_tp_t *tp)
{
    if (!tp)
        return;
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->stop, true);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 1; i < tp->n; i++)
        pthread_join(tp->workers[i - 1].thread, NULL);
    pthread_cond_destroy(&tp->cv);
    pthread_mutex_destroy(&tp->mu);
    free(tp->workers);
    free(tp);
}

int eng_tp_size(const eng_tp_t *tp)
{
    return tp->n;
}

void eng_tp_run(eng_tp_t *tp, eng_tp_fn fn, void *arg)
{
    if (tp->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    atomic_store_explicit(&tp->pending, tp->n - 1, memory_order_relaxed);
    atomic_fetch_add(&tp->gen, 1);   // seq_cst: pairs with n_sleeping (Dekker)
    if (atomic_load(&tp->n_sleeping) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv);
        pthread_mutex_unlock(&tp->mu);
    }
    fn(arg, 0, tp->n);
    int spins = 0;
    while (atomic_load_explicit(&tp->pending, memory_order_acquire) > 0) {
        if (++spins < SPIN_PAUSES)
            CPU_RELAX();
        else
            sched_yield();   // a worker is not running: give it our core
    }
}

void eng_tp_barrier(eng_tp_t *tp)
{
    if (tp->n == 1)
        return;
    unsigned g = atomic_load_explicit(&tp->bar_gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&tp->bar_count, 1, memory_order_acq_rel) == tp->n - 1) {
        atomic_store_explicit(&tp->bar_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&tp->bar_gen, 1, memory_order_acq_rel);
        return;
    }
    int spins = 0;
    while (atomic_load_explicit(&tp->bar_gen, memory_order_acquire) == g) {
        if (++spins < SPIN_PAUSES)
            CPU_RELAX();
        else
            sched_yield();
    }
}
