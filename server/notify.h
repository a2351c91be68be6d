/* server/notify.h: the systemd service-manager protocol (sd_notify): READY=1 once the model is
 * loaded, STATUS= lines, STOPPING=1 on drain, WATCHDOG=1 keep-alives. Owns the one place that
 * knows whether libsystemd was compiled in; without it (or outside systemd, when
 * NOTIFY_SOCKET is unset) every call is a successful no-op.
 * Thread: any. */
#ifndef ORTHOD_SERVER_NOTIFY_H
#define ORTHOD_SERVER_NOTIFY_H

#include <stdint.h>

/* Sends state (e.g. "READY=1\nSTATUS=serving") to the service manager. Returns 1 if sent,
 * 0 if there is no manager to tell, or a negative ERR_IO. */
int srv_notify_send(const char *state);

/* The watchdog interval systemd expects keep-alives within (WatchdogSec), in microseconds;
 * 0 when the watchdog is off or this process is not the one it watches. */
uint64_t srv_notify_watchdog_usec(void);

#endif
