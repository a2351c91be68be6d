/* gpu/emu/emu.cpp: the emulated device behind gpu/emu/emu.h (test builds only).
 * Owns: device allocations (exact-size host allocations so ASan bounds-checks kernels),
 * the last-error slot, streams (synchronous), events, stream capture into graphs, the
 * fiber executor that runs a grid block by block, and a reference cublasGemmEx. */
#include "emu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <memory>

extern "C" {
float eng_fp16_to_fp32(uint16_t h);
}

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace emu {

struct stream {
    bool capturing;
    graph *cap;
};
struct event {
    double t;
};
struct graph {
    std::vector<std::function<void()>> nodes;
};
struct graph_exec {
    std::vector<std::function<void()>> nodes;
};
struct blas {
    cudaStream_t s;
};

namespace {

enum { F_READY = 0, F_BAR, F_WARP, F_DONE };

const size_t STACK_BYTES = 256 * 1024;

/* Context switching: a 7-instruction switch on x86-64 (callee-saved registers, MXCSR and the
 * x87 control word on the stack; no signal-mask syscall as in swapcontext), ucontext
 * elsewhere. */
#if defined(__x86_64__)
#define EMU_FAST_SWITCH 1
extern "C" void emu_ctx_switch(void **save_sp, void *load_sp);
__asm__(".text\n"
        ".globl emu_ctx_switch\n"
        ".type emu_ctx_switch,@function\n"
        "emu_ctx_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size emu_ctx_switch, .-emu_ctx_switch\n"
        ".section .note.GNU-stack,\"\",@progbits\n"
        ".text\n");
#endif

struct fiber {
#ifdef EMU_FAST_SWITCH
    void *sp;
#else
    ucontext_t ctx;
#endif
    void *stack;
    int state;
    uint64_t slot[2];
    uint64_t gen;
    thread_regs r;
    int linear;
    void *fake_stack;
};

struct device_state {
    std::map<uintptr_t, size_t> allocs;      // device memory: start -> size
    std::map<uintptr_t, size_t> pinned;      // cudaMallocHost
    size_t used = 0, limit = 0;
    cudaError_t last = cudaSuccess;
    stream default_stream = {false, nullptr};
    // the executor
    std::vector<fiber> fibers;
#ifdef EMU_FAST_SWITCH
    void *sched_sp = nullptr;
#else
    ucontext_t sched;
#endif
    const std::function<void()> *body = nullptr;
    fiber *cur = nullptr;
    std::vector<unsigned char> smem;
    const char *kernel = "";
    const void *sched_bottom = nullptr;
    size_t sched_size = 0;
    bool in_kernel = false;
    bool capture_fails = false;                   // test knob: cudaStreamEndCapture fails
    uint64_t sched_rng = 0x243f6a8885a308d3ull;   // fiber order: a fresh permutation per round
    std::vector<int> order;
};

device_state &dev()
{
    static device_state d;
    return d;
}

size_t mem_limit()
{
    device_state &d = dev();
    return d.limit ? d.limit : (size_t)64 << 30;
}

cudaError_t fail(cudaError_t e)
{
    dev().last = e;
    return e;
}

[[noreturn]] void die(const char *what)
{
    fprintf(stderr, "gpu emulator: %s (kernel %s)\n", what, dev().kernel);
    abort();
}

/* The live allocation that contains [p, p + n), or NULL. */
bool in_device(const void *p, size_t n)
{
    device_state &d = dev();
    uintptr_t a = (uintptr_t)p;
    auto it = d.allocs.upper_bound(a);
    if (it == d.allocs.begin())
        return false;
    --it;
    return a >= it->first && a - it->first <= it->second && n <= it->second - (a - it->first);
}

bool touches_device(const void *p, size_t n)
{
    device_state &d = dev();
    uintptr_t a = (uintptr_t)p;
    for (auto &kv : d.allocs)
        if (a < kv.first + kv.second && kv.first < a + (n ? n : 1))
            return true;
    return false;
}

double now_ms()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

stream *S(cudaStream_t s)
{
    return s ? s : &dev().default_stream;
}

/* Runs fn now, or appends it to the graph the stream is capturing. */
void submit(cudaStream_t s, std::function<void()> fn)
{
    stream *st = S(s);
    if (st->capturing)
        st->cap->nodes.push_back(std::move(fn));
    else
        fn();
}

/* --- fibers --- */
void to_scheduler(fiber *f)
{
    device_state &d = dev();
#ifdef EMU_FAST_SWITCH
    emu_ctx_switch(&f->sp, d.sched_sp);
#else
    if (swapcontext(&f->ctx, &d.sched) != 0)
        die("swapcontext failed");
#endif
}

void fiber_entry()
{
    device_state &d = dev();
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &d.sched_bottom, &d.sched_size);
#endif
    (*d.body)();
    fiber *f = d.cur;
    f->state = F_DONE;
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, d.sched_bottom, d.sched_size);
#endif
    to_scheduler(f);
    die("a finished fiber was resumed");
}

void yield()
{
    device_state &d = dev();
    fiber *f = d.cur;
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(&f->fake_stack, d.sched_bottom, d.sched_size);
#endif
    to_scheduler(f);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &d.sched_bottom, &d.sched_size);
#endif
}

void run_fiber(fiber &f)
{
    device_state &d = dev();
    d.cur = &f;
#ifdef EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f.stack, STACK_BYTES);
#endif
#ifdef EMU_FAST_SWITCH
    emu_ctx_switch(&d.sched_sp, f.sp);
#else
    if (swapcontext(&d.sched, &f.ctx) != 0)
        die("swapcontext failed");
#endif
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
    d.cur = nullptr;
}

/* Makes f start at fiber_entry on its own stack at the next switch to it. */
void fiber_start(device_state &d, fiber &f)
{
#ifdef EMU_FAST_SWITCH
    (void)d;
    uint64_t *top = (uint64_t *)((char *)f.stack + STACK_BYTES);
    uint64_t *sp = top - 9;     // [csr][r15 r14 r13 r12 rbx rbp][ret][pad]
    sp[0] = 0x1f80u | ((uint64_t)0x037fu << 32);    // MXCSR default, x87 control word default
    for (int i = 1; i <= 6; i++)
        sp[i] = 0;
    sp[7] = (uint64_t)(uintptr_t)&fiber_entry;
    sp[8] = 0;
    f.sp = sp;
#else
    if (getcontext(&f.ctx) != 0)
        die("getcontext failed");
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = STACK_BYTES;
    f.ctx.uc_link = &d.sched;
    makecontext(&f.ctx, fiber_entry, 0);
#endif
}

void run_block(const std::function<void()> &body, dim3 grid, dim3 block, uint3 bid)
{
    device_state &d = dev();
    const int n = (int)(block.x * block.y * block.z);
    while ((int)d.fibers.size() < n) {
        fiber f{};
        f.stack = mmap(nullptr, STACK_BYTES, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (f.stack == MAP_FAILED)
            die("cannot map a fiber stack");
        d.fibers.push_back(f);
    }
    d.body = &body;
    for (int i = 0; i < n; i++) {
        fiber &f = d.fibers[(size_t)i];
        f.state = F_READY;
        f.gen = 0;
        f.linear = i;
        f.r.bdim = block;
        f.r.gdim = grid;
        f.r.bid = bid;
        f.r.tid = uint3{(unsigned)i % block.x, ((unsigned)i / block.x) % block.y,
                        (unsigned)i / (block.x * block.y)};
        fiber_start(d, f);
    }
    d.order.resize((size_t)n);
    for (;;) {
        // Runs the ready fibers in a random order, each up to its next barrier or shuffle,
        // so a read of another thread's write that lacks a barrier sees stale data.
        for (int i = 0; i < n; i++)
            d.order[(size_t)i] = i;
        for (int i = n - 1; i > 0; i--) {
            uint64_t x = d.sched_rng;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            d.sched_rng = x;
            int j = (int)(x % (uint64_t)(i + 1));
            std::swap(d.order[(size_t)i], d.order[(size_t)j]);
        }
        for (int k = 0; k < n; k++) {
            fiber &f = d.fibers[(size_t)d.order[(size_t)k]];
            if (f.state == F_READY)
                run_fiber(f);
        }
        int done = 0, bar = 0;
        bool released = false;
        for (int w = 0; w * 32 < n; w++) {
            int lo = w * 32, hi = lo + 32 < n ? lo + 32 : n, waiting = 0;
            uint64_t gen = 0;
            bool same = true;
            for (int i = lo; i < hi; i++) {
                const fiber &f = d.fibers[(size_t)i];
                if (f.state == F_WARP) {
                    if (waiting && f.gen != gen)
                        same = false;
                    gen = f.gen;
                    waiting++;
                }
            }
            if (!waiting)
                continue;
            if (waiting != hi - lo || !same)
                die("divergent warp shuffle: some lanes of a warp exited, wait at a barrier, "
                    "or shuffle a different number of times");
            for (int i = lo; i < hi; i++)
                d.fibers[(size_t)i].state = F_READY;
            released = true;
        }
        if (released)
            continue;
        for (int i = 0; i < n; i++) {
            done += d.fibers[(size_t)i].state == F_DONE;
            bar += d.fibers[(size_t)i].state == F_BAR;
        }
        if (done == n)
            break;
        if (bar + done == n) {
            for (int i = 0; i < n; i++)
                if (d.fibers[(size_t)i].state == F_BAR)
                    d.fibers[(size_t)i].state = F_READY;
            continue;
        }
        die("deadlock in the emulated block");
    }
}

} // namespace

const thread_regs &regs()
{
    device_state &d = dev();
    if (!d.cur)
        die("threadIdx used outside a kernel");
    return d.cur->r;
}

int lane_id()
{
    device_state &d = dev();
    if (!d.cur)
        die("lane id outside a kernel");
    return d.cur->linear % 32;
}

void syncthreads()
{
    device_state &d = dev();
    if (!d.cur)
        die("__syncthreads outside a kernel");
    d.cur->state = F_BAR;
    yield();
}

uint64_t warp_exchange(uint64_t mine, int src_lane)
{
    device_state &d = dev();
    fiber *f = d.cur;
    if (!f)
        die("warp shuffle outside a kernel");
    const int base = f->linear - f->linear % 32;
    const int n = (int)d.fibers.size() > 0 ? (int)(f->r.bdim.x * f->r.bdim.y * f->r.bdim.z) : 0;
    if (src_lane < 0 || src_lane > 31 || base + src_lane >= n)
        die("warp shuffle from a lane that does not exist");
    const uint64_t k = f->gen;
    f->slot[k & 1] = mine;
    f->gen = k + 1;
    f->state = F_WARP;
    yield();
    return d.fibers[(size_t)(base + src_lane)].slot[k & 1];
}

void *dyn_smem()
{
    device_state &d = dev();
    return d.smem.empty() ? nullptr : d.smem.data();
}

void check_device_ptr(const void *p, const char *kernel, int arg)
{
    if (p && !in_device(p, 0)) {
        fprintf(stderr, "gpu emulator: %s argument %d (%p) is not device memory\n", kernel, arg, p);
        abort();
    }
}

void set_mem_limit(size_t bytes)
{
    dev().limit = bytes;
}

void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t s, std::function<void()> body,
            const char *kernel)
{
    const unsigned long long nt = (unsigned long long)block.x * block.y * block.z;
    if (!grid.x || !grid.y || !grid.z || !nt || nt > 1024 || block.z > 64 || grid.y > 65535 ||
        grid.z > 65535 || grid.x > 0x7fffffffu || smem > 227 * 1024) {
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    submit(s, [grid, block, smem, body, kernel]() {
        device_state &d = dev();
        if (d.in_kernel)
            die("nested launch");
        d.in_kernel = true;
        d.kernel = kernel;
        d.smem.assign(smem, 0xff);            // uninitialized shared memory reads as NaN
        // blocks in a random order (a GPU promises none): a stride coprime to the block
        // count from a random start visits every block once
        const uint64_t nb = (uint64_t)grid.x * grid.y * grid.z;
        uint64_t x = d.sched_rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        d.sched_rng = x;
        uint64_t stride = nb > 1 ? 1 + (x >> 20) % (nb - 1) : 1, start = x % nb;
        while (std::gcd(stride, nb) != 1)
            stride = stride % (nb - 1) + 1;
        for (uint64_t k = 0; k < nb; k++) {
            const uint64_t b = (start + k * stride) % nb;
            if (smem)
                memset(d.smem.data(), 0xff, smem);
            run_block(body, grid, block,
                      uint3{(unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y),
                            (unsigned)(b / ((uint64_t)grid.x * grid.y))});
        }
        d.in_kernel = false;
        d.kernel = "";
    });
}

} // namespace emu

using emu::dev;

/* --- runtime API --------------------------------------------------------------------------- */
cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int d)
{
    return d == 0 ? cudaSuccess : emu::fail(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDevice(int *d)
{
    *d = 0;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d)
{
    if (d != 0)
        return emu::fail(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "orthod CPU emulator");
    p->totalGlobalMem = emu::mem_limit();
    p->sharedMemPerBlock = 48 * 1024;
    p->sharedMemPerBlockOptin = 227 * 1024;
    p->multiProcessorCount = 4;
    p->major = 9;
    p->minor = 0;
    p->l2CacheSize = 50 << 20;
    p->warpSize = 32;
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *v)
{
    *v = 13000;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *v)
{
    *v = 13000;
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b)
{
    *total_b = emu::mem_limit();
    *free_b = *total_b - dev().used;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t n)
{
    auto &d = dev();
    if (!p)
        return emu::fail(cudaErrorInvalidValue);
    size_t sz = n ? n : 1;
    if (sz > emu::mem_limit() - d.used)
        return emu::fail(cudaErrorMemoryAllocation);
    void *q = nullptr;
    if (posix_memalign(&q, 256, sz) != 0)
        return emu::fail(cudaErrorMemoryAllocation);
    memset(q, 0xff, sz);                       // like real device memory: not zeroed
    d.allocs[(uintptr_t)q] = sz;
    d.used += sz;
    *p = q;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    auto &d = dev();
    if (!p)
        return cudaSuccess;
    auto it = d.allocs.find((uintptr_t)p);
    if (it == d.allocs.end())
        return emu::fail(cudaErrorInvalidDevicePointer);
    d.used -= it->second;
    d.allocs.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t n)
{
    void *q = malloc(n ? n : 1);
    if (!q)
        return emu::fail(cudaErrorMemoryAllocation);
    dev().pinned[(uintptr_t)q] = n;
    *p = q;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *p)
{
    auto &d = dev();
    if (!p)
        return cudaSuccess;
    auto it = d.pinned.find((uintptr_t)p);
    if (it == d.pinned.end())
        return emu::fail(cudaErrorInvalidValue);
    d.pinned.erase(it);
    free(p);
    return cudaSuccess;
}

static cudaError_t check_copy(void *dst, const void *src, size_t n, cudaMemcpyKind kind)
{
    if (n == 0)
        return cudaSuccess;
    bool dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind > cudaMemcpyDeviceToDevice)
        return emu::fail(cudaErrorInvalidMemcpyDirection);
    if (dd ? !emu::in_device(dst, n) : emu::touches_device(dst, n)) {
        fprintf(stderr, "gpu emulator: cudaMemcpy kind %d: destination %p+%zu is %s\n", (int)kind,
                dst, n, dd ? "not inside one device allocation" : "device memory");
        abort();
    }
    if (sd ? !emu::in_device(src, n) : emu::touches_device(src, n)) {
        fprintf(stderr, "gpu emulator: cudaMemcpy kind %d: source %p+%zu is %s\n", (int)kind, src,
                n, sd ? "not inside one device allocation" : "device memory");
        abort();
    }
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind)
{
    cudaError_t e = check_copy(dst, src, n, kind);
    if (e != cudaSuccess)
        return e;
    if (emu::S(nullptr)->capturing)
        return emu::fail(cudaErrorStreamCaptureUnsupported);
    if (n)
        memmove(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t s)
{
    cudaError_t e = check_copy(dst, src, n, kind);
    if (e != cudaSuccess)
        return e;
    if (emu::S(s)->capturing && kind != cudaMemcpyDeviceToDevice)
        return emu::fail(cudaErrorStreamCaptureUnsupported);   // keep graphs device-only
    if (n)
        emu::submit(s, [dst, src, n]() { memmove(dst, src, n); });
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t n, cudaStream_t s)
{
    if (n && !emu::in_device(dst, n)) {
        fprintf(stderr, "gpu emulator: cudaMemsetAsync %p+%zu is not device memory\n", dst, n);
        abort();
    }
    if (n)
        emu::submit(s, [dst, value, n]() { memset(dst, value, n); });
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags)
{
    (void)flags;
    *s = new emu::stream{false, nullptr};
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    if (s && s->capturing)
        delete s->cap;
    delete s;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    if (emu::S(s)->capturing)
        return emu::fail(cudaErrorStreamCaptureUnsupported);
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    return cudaStreamSynchronize(nullptr);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags)
{
    (void)flags;
    *e = new emu::event{0.0};
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e)
{
    return cudaEventCreateWithFlags(e, 0);
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
    if (!e)
        return emu::fail(cudaErrorInvalidResourceHandle);
    emu::submit(s, [e]() { e->t = emu::now_ms(); });
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    return e ? cudaSuccess : emu::fail(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    if (!a || !b)
        return emu::fail(cudaErrorInvalidResourceHandle);
    *ms = (float)(b->t - a->t);
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    delete e;
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = dev().last;
    dev().last = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void)
{
    return dev().last;
}

const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    default: return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    default: return cudaGetErrorName(e);
    }
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode)
{
    (void)mode;
    emu::stream *st = emu::S(s);
    if (!s || st->capturing)
        return emu::fail(cudaErrorInvalidValue);   // the legacy stream cannot be captured
    st->capturing = true;
    st->cap = new emu::graph();
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g)
{
    emu::stream *st = emu::S(s);
    if (!st->capturing)
        return emu::fail(cudaErrorInvalidValue);
    *g = st->cap;
    st->cap = nullptr;
    st->capturing = false;
    if (dev().capture_fails) {        // as when a captured call was illegal under capture
        delete *g;
        *g = nullptr;
        return emu::fail(cudaErrorStreamCaptureInvalidated);
    }
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status)
{
    *status = emu::S(s)->capturing ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusNone;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags)
{
    (void)flags;
    if (!g)
        return emu::fail(cudaErrorInvalidValue);
    *e = new emu::graph_exec{g->nodes};
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s)
{
    if (!e)
        return emu::fail(cudaErrorInvalidValue);
    if (emu::S(s)->capturing)
        return emu::fail(cudaErrorStreamCaptureUnsupported);
    for (auto &fn : e->nodes)
        fn();
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t g)
{
    delete g;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e)
{
    delete e;
    return cudaSuccess;
}

/* --- cuBLAS ------------------------------------------------------------------------------------ */
cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = new emu::blas{nullptr};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    h->s = s;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes)
{
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (bytes && !emu::in_device(ws, bytes))
        return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m)
{
    (void)m;
    return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

static size_t dt_size(cudaDataType_t t)
{
    return t == CUDA_R_32F ? 4 : 2;
}

static float dt_load(cudaDataType_t t, const void *p, size_t i)
{
    if (t == CUDA_R_32F)
        return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    if (t == CUDA_R_16F)
        return eng_fp16_to_fp32(h);
    uint32_t w = (uint32_t)h << 16;
    float f;
    memcpy(&f, &w, 4);
    return f;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t comp,
                            cublasGemmAlgo_t algo)
{
    (void)algo;
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    const int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
    const int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
    if (m < 0 || n < 0 || k < 0 || lda < (ar > 1 ? ar : 1) || ldb < (br > 1 ? br : 1) ||
        ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (comp != CUBLAS_COMPUTE_32F || ct != CUDA_R_32F || at != bt)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m == 0 || n == 0)
        return CUBLAS_STATUS_SUCCESS;
    // every matrix must lie inside one device allocation
    const size_t a_end = ((size_t)(ac > 0 ? ac - 1 : 0) * (size_t)lda + (size_t)ar) * dt_size(at);
    const size_t b_end = ((size_t)(bc > 0 ? bc - 1 : 0) * (size_t)ldb + (size_t)br) * dt_size(bt);
    const size_t c_end = ((size_t)(n - 1) * (size_t)ldc + (size_t)m) * 4;
    if ((k && (!emu::in_device(A, a_end) || !emu::in_device(B, b_end))) ||
        !emu::in_device(C, c_end)) {
        fprintf(stderr, "gpu emulator: cublasGemmEx: a matrix is outside device memory\n");
        abort();
    }
    const float al = *(const float *)alpha, be = *(const float *)beta;
    emu::submit(h->s, [=]() {
        float *c = (float *)C;
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                float s = 0.0f;
                for (int l = 0; l < k; l++) {
                    float a = dt_load(at, A, ta == CUBLAS_OP_N ? (size_t)i + (size_t)l * (size_t)lda
                                                               : (size_t)l + (size_t)i * (size_t)lda);
                    float b = dt_load(bt, B, tb == CUBLAS_OP_N ? (size_t)l + (size_t)j * (size_t)ldb
                                                               : (size_t)j + (size_t)l * (size_t)ldb);
                    s += a * b;
                }
                float *o = c + (size_t)i + (size_t)j * (size_t)ldc;
                *o = be == 0.0f ? al * s : al * s + be * *o;
            }
    });
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusName(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}

const char *cublasGetStatusString(cublasStatus_t s)
{
    return cublasGetStatusName(s);
}

/* C entry points for tests: simulated device memory size; make graph capture fail. */
extern "C" void gpu_emu_set_mem_limit(size_t bytes)
{
    emu::set_mem_limit(bytes);
}

extern "C" void gpu_emu_set_capture_fails(int on)
{
    dev().capture_fails = on != 0;
}
