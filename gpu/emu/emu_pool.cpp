/* gpu/emu/emu_pool.cpp: gpu/pool.cu compiled as C++ against the emulator (test builds only). */
#include "../pool.cu"
