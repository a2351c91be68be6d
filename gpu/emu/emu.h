/* gpu/emu/emu.h: a CPU emulation of the slice of the CUDA runtime, cuBLAS and CUDA C++ that
 * gpu/ uses, so that gpu/'s host logic and kernels run (and are tested, under ASan/UBSan
 * too) on machines without a GPU. Test builds only: the .cu files of gpu/ compiled as C++
 * with -DGPU_EMU against this header (the gpu/emu/emu_NAME.cpp wrappers), linked into the
 * tests whose names end in _emu.
 * Owns: the emulated device (allocations, streams, events, graphs, last error) and the
 * block executor. Each block's threads run as fibers on the calling thread, switched
 * only at __syncthreads() and warp shuffles, one block at a time; so `__shared__` is a
 * function-static array, a missing barrier shows up as a wrong result, and ASan sees
 * every out-of-bounds kernel access against the exact cudaMalloc size.
 * Checks a real GPU would not make: kernel pointer arguments and cudaMemcpy ranges must
 * lie inside live device allocations (or be host memory on the host side), divergent
 * barriers and shuffles abort with a message.
 * Exception to "no global mutable state": the emulated device and the current fiber
 * (threadIdx and friends are nullary expressions in CUDA) live in file-level state. */
#ifndef ORTHOD_GPU_EMU_H
#define ORTHOD_GPU_EMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

/* --- CUDA C++ keywords and types --------------------------------------------------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
static inline float2 make_float2(float x, float y) { return float2{x, y}; }

#define CUDART_VERSION 13000

/* --- runtime types ---------------------------------------------------------------------------- */
enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotSupported = 801,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchFailure = 719,
    cudaErrorUnknown = 999,
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};

enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2,
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02

namespace emu {
struct stream;
struct event;
struct graph;
struct graph_exec;
}
typedef emu::stream *cudaStream_t;
typedef emu::event *cudaEvent_t;
typedef emu::graph *cudaGraph_t;
typedef emu::graph_exec *cudaGraphExec_t;

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    size_t sharedMemPerBlockOptin;
    int multiProcessorCount;
    int major, minor;
    int l2CacheSize;
    int warpSize;
};

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t s);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t n, cudaStream_t s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *st);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);
template <class F>
cudaError_t cudaFuncSetAttribute(F *, cudaFuncAttribute, int) { return cudaSuccess; }

/* --- cuBLAS ------------------------------------------------------------------------------------- */
enum cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
namespace emu {
struct blas;
}
typedef emu::blas *cublasHandle_t;

cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t comp,
                            cublasGemmAlgo_t algo);
const char *cublasGetStatusString(cublasStatus_t s);
const char *cublasGetStatusName(cublasStatus_t s);

/* --- the executor ----------------------------------------------------------------------------- */
namespace emu {

struct thread_regs {
    uint3 tid, bid;
    dim3 bdim, gdim;
};
/* The running fiber's registers (threadIdx etc.). */
const thread_regs &regs();
void syncthreads();
/* Posts 8 bytes for the current warp exchange and returns lane `src`'s posted bytes. */
uint64_t warp_exchange(uint64_t mine, int src_lane);
int lane_id();
void *dyn_smem();

/* Runs body once per thread of grid x block (stream order: synchronous), or records it
 * into the graph the stream is capturing. */
void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t s, std::function<void()> body,
            const char *kernel);
/* Aborts unless [p, p+1) is in a live device allocation (NULL passes). */
void check_device_ptr(const void *p, const char *kernel, int arg);
/* Simulated device memory for OOM tests: cudaMalloc fails past `bytes` in use (0: 64 GiB). */
void set_mem_limit(size_t bytes);

template <class T>
inline void check_arg(const T &, const char *, int)
{
}
template <class T>
inline void check_arg(T *const &p, const char *k, int i)
{
    check_device_ptr((const void *)p, k, i);
}

template <class... P>
struct launcher {
    dim3 g, b;
    size_t smem;
    cudaStream_t s;
    void (*k)(P...);
    void operator()(P... args) const
    {
        int i = 0;
        (check_arg(args, "kernel", i++), ...);
        auto fn = k;
        auto tup = std::make_tuple(args...);
        launch(g, b, smem, s, [fn, tup]() { std::apply(fn, tup); }, "kernel");
    }
};
template <class... P>
launcher<P...> make_launch(dim3 g, dim3 b, size_t smem, cudaStream_t s, void (*k)(P...))
{
    return launcher<P...>{g, b, smem, s, k};
}

} // namespace emu

#define threadIdx (emu::regs().tid)
#define blockIdx (emu::regs().bid)
#define blockDim (emu::regs().bdim)
#define gridDim (emu::regs().gdim)
#define __syncthreads() emu::syncthreads()
#define __syncwarp(...) ((void)emu::warp_exchange(0, emu::lane_id()))

template <class T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle type");
    (void)mask;
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    uint64_t got = emu::warp_exchange(bits, emu::lane_id() ^ lane_mask);
    T r;
    memcpy(&r, &got, sizeof r);
    return r;
}

template <class T>
static inline T __ldg(const T *p) { return *p; }
template <class T>
static inline T __ldcs(const T *p) { return *p; }

#endif
