/* gpu/emu/emu_ops.cpp: gpu/ops.cu compiled as C++ against the emulator (test builds only). */
#include "../ops.cu"
