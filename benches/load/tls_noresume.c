/* LD_PRELOAD shim for benches/load/tls.sh: every TLS handshake of the
 * client a full one.
 *
 * wrk and h2load keep one OpenSSL SSL object per connection slot and, on a
 * reconnect, SSL_clear() it, which keeps the last session; the next
 * SSL_connect then offers it, and servers with tickets or a session cache
 * (nginx, Caddy, rustls by default) resume. This drops the session before
 * a handshake starts, so the client offers none: a first visit, each time.
 *
 *   cc -shared -fPIC -O2 -o tls_noresume.so tls_noresume.c -ldl
 *   LD_PRELOAD=./tls_noresume.so wrk -H 'Connection: close' https://...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_in_before(const SSL *s);
int SSL_set_session(SSL *s, SSL_SESSION *session);

/* Only before the first handshake message: a non-blocking client calls
 * SSL_connect again while its handshake is in progress. */
static void forget_session(SSL *s)
{
    if (SSL_in_before(s))
        SSL_set_session(s, NULL);
}

int SSL_connect(SSL *s)
{
    static int (*real)(SSL *);
    if (!real)
        real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    forget_session(s);
    return real(s);
}

int SSL_do_handshake(SSL *s)
{
    static int (*real)(SSL *);
    if (!real)
        real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_do_handshake");
    forget_session(s);
    return real(s);
}
