/* engine/cpu/level_avx2.c: the avx2 kernel level (kernels.h): the matmul kinds of
 * mm_avx2.h under the driver mm_tmpl.h, the element-wise template vec_tmpl.h, and the
 * attention tile worker of attention_avx2.c, in one table. Compiled with the level's -m
 * flags and FP contraction off; used only after features.c found the level usable. */
#include "kernels.h"
#include "attention_impl.h"
#include "mm_avx2.h"
#include "mm_tmpl.h"
#include "vec_tmpl.h"

ENG_CPU_KERNELS_DEFINE(avx2, eng_cpu_attention_worker_avx2);
