/* gpu/emu/emu_attention.cpp: gpu/attention.cu compiled as C++ against the emulator (test builds only). */
#include "../attention.cu"
