/* engine/cpu/train_kern_avx512.c: the training kernels (train_kern.h) at the avx512 level:
 * 16-float vectors, an 8 x 32 GEMM register tile (16 accumulators), FMA contraction. */
#define TK_VL 16
#define TK_MR 8
#define TK_NV 2
#define TK_SETUP eng_cpu_tk_avx512_fill
#include "train_kern.h"

void eng_cpu_tk_avx512(struct eng_cpu_tk *t)
{
    t->name = "avx512";
    eng_cpu_tk_avx512_fill(t);
}
