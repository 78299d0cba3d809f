/* Names for error codes (errno's own, and cio's codes outside its range),
 * and the library's version. */
#define _GNU_SOURCE
#include "internal.h"

#include <netdb.h>
#include <stdatomic.h>
#include <string.h>

unsigned cio_version(void) { return CIO_VERSION_HEX; }
const char *cio_version_string(void) { return CIO_VERSION_STRING; }

/* The program's namer for its own codes; atomic, as any thread reads it. */
static _Atomic(cio_user_strerror_fn) user_namer;

void cio_set_user_strerror(cio_user_strerror_fn fn)
{
    atomic_store(&user_namer, fn);
}

/* "user error N" unless the program names it. The buffer is per thread,
 * so that threads naming codes at once do not write over each other. */
static const char *user_strerror(int n)
{
    static _Thread_local char buf[32];
    cio_user_strerror_fn fn = atomic_load(&user_namer);
    const char *name = fn ? fn(n) : NULL;
    if (name)
        return name;
    snprintf(buf, sizeof buf, "user error %d", n);
    return buf;
}

const char *cio_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case CIO_EINCOMPLETE:
        return "incomplete read: end of stream before the expected data";
    case CIO_ELIMIT:
        return "limit overrun: separator not found within the buffer limit";
    case CIO_EBROKEN:
        return "broken barrier";
    case CIO_ETLS:
        return "TLS failure (cio_tls_error_string says why)";
    case CIO_ETLSEOF:
        return "TLS connection ended without close_notify (truncated)";
    case CIO_ENOTASK:
        return "not inside a task";
    /* asyncio's meanings, where errno's text would mislead */
    case -ECANCELED:
        return "cancelled";
    case -ETIMEDOUT:
        return "timed out";
    case -ESHUTDOWN:
        return "shut down";
    }
    if (CIO_EUSER_NUM(err) >= 0)
        return user_strerror(CIO_EUSER_NUM(err));
    if (err <= CIO_EAI_BASE && err > CIO_EAI_BASE - 200)
        return gai_strerror(err - CIO_EAI_BASE); /* static strings */
    if (err < 0 && err > -4096) {
        /* strerror is not thread-safe in general, but glibc returns static
         * strings for known codes; unknown ones fall through below. */
        const char *s = strerrordesc_np(-err);
        if (s)
            return s;
    }
    return "unknown error";
}
