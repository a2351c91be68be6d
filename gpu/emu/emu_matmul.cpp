/* gpu/emu/emu_matmul.cpp: gpu/matmul.cu compiled as C++ against the emulator (test builds only). */
#include "../matmul.cu"
