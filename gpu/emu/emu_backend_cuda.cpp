/* gpu/emu/emu_backend_cuda.cpp: gpu/backend_cuda.cu compiled as C++ against the emulator (test builds only). */
#include "../backend_cuda.cu"
