/* server/notify.c: sd_notify through libsystemd when it was found at build time. */
#include "notify.h"

#include "../common/err.h"
#include "orthod_config.h"

#if ORTHOD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

int srv_notify_send(const char *state)
{
#if ORTHOD_HAVE_SYSTEMD
    int r = sd_notify(0, state);
    return r < 0 ? ERR_IO : r;
#else
    (void)state;
    return 0;
#endif
}

uint64_t srv_notify_watchdog_usec(void)
{
#if ORTHOD_HAVE_SYSTEMD
    uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
#else
    return 0;
#endif
}
