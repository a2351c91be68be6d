/* tests/module_needsdep.c: a module that needs a library which is absent once the module is
 * copied away from the build tree (tests/test_cuda_module.sh): the loader's message must name
 * that library, as it must name libcublas.so.N on a host without cuBLAS. */
int orthod_testdep_value(void);
int orthod_test_needsdep(void);

int orthod_test_needsdep(void)
{
    return orthod_testdep_value();
}
