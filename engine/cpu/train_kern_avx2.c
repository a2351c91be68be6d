/* engine/cpu/train_kern_avx2.c: the training kernels (train_kern.h) at the avx2 level:
 * 8-float vectors, a 6 x 16 GEMM register tile (12 accumulators), FMA contraction. */
#define TK_VL 8
#define TK_MR 6
#define TK_NV 2
#define TK_SETUP eng_cpu_tk_avx2_fill
#include "train_kern.h"

void eng_cpu_tk_avx2(struct eng_cpu_tk *t)
{
    t->name = "avx2";
    eng_cpu_tk_avx2_fill(t);
}
