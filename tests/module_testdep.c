/* tests/module_testdep.c: the library tests/module_needsdep.c needs. */
int orthod_testdep_value(void);

int orthod_testdep_value(void)
{
    return 42;
}
