/* engine/cpu/level_avx512.c: the avx512 kernel level (kernels.h): the matmul kinds of
 * mm_avx512.h under the driver mm_tmpl.h, the element-wise template vec_tmpl.h, and the
 * attention tile worker of attention_avx512.c, in one table. Compiled with the level's -m
 * flags and FP contraction off; used only after features.c found the level usable. */
#include "kernels.h"
#include "attention_impl.h"
#include "mm_avx512.h"
#include "mm_tmpl.h"
#include "vec_tmpl.h"

ENG_CPU_KERNELS_DEFINE(avx512, eng_cpu_attention_worker_avx512);
