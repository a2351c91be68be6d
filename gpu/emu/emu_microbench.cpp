/* gpu/emu/emu_microbench.cpp: gpu/microbench.cu compiled as C++ against the emulator (test builds only). */
#include "../microbench.cu"
