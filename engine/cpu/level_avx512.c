/* engine/cpu/level_avx512.c: the avx512 kernel level (kernels.h): the matmul kinds of
 * mm_avx512.h under the driver mm_tmpl.h, the element-wise template vec_tmpl.h, and the
 * attention tile worker of attention_avx512.c, in one table. Compiled with the level's -m
 * flags and FP contraction off; used only after features.c found the level usable. */
#include "kernels.h"
#include "attention_impl.h"
#include "mm_avx512.h"
#include "mm_tmpl.h"
#include "vec_tmpl.h"

const struct eng_cpu_kernels eng_cpu_kernels_avx512 = {
    .name = "avx512",
    .mm_act_bytes = mm_act_bytes,
    .mm_pack_bytes = mm_pack_bytes,
    .mm_worker = mm_worker,
    .att_worker = eng_cpu_attention_worker_avx512,
    .silu_mul = vec_silu_mul,
    .add = vec_add,
    .exp_sum = vec_exp_sum,
    .rmsnorm = vec_rmsnorm,
    .f32_to_f16 = vec_f32_to_f16,
};
