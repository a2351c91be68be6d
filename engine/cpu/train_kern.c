/* engine/cpu/train_kern.c: the training kernels (train_kern.h) at the baseline level
 * (SSE2 vectors on x86-64, whatever the target has elsewhere); the reference level for
 * CPUs without AVX2. */
#define TK_VL 4
#define TK_MR 4
#define TK_NV 2
#define TK_SETUP eng_cpu_tk_base_fill
#include "train_kern.h"

void eng_cpu_tk_base(struct eng_cpu_tk *t)
{
    t->name = "scalar";
    eng_cpu_tk_base_fill(t);
}
