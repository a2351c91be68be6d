/* gpu/module_id.c: the CUDA module's build id (gpu/gpu.h). Compiled as C so that it is rebuilt
 * whenever the configuration changes: meson 1.0 records no header dependencies for .cu files,
 * so a .cu object can outlive the orthod_config.h it was compiled with. The struct sizes in
 * the module's table stay in backend_cuda.cu: if the engine's headers change and the .cu
 * objects do not follow, the loader sees the old sizes and refuses the stale module. */
#include "gpu.h"

#include "orthod_config.h"

const char gpu_module_build_id[] = GPU_MODULE_BUILD;
