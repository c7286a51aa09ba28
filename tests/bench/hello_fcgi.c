/*
 * The floor of the transport: a FastCGI responder on libfcgi (Debian's
 * libfcgi-dev) that answers every request with the same bytes as
 * apps/hello.py, without Python. bench.py builds it with
 *
 *     gcc -O2 -o hello_fcgi hello_fcgi.c -lfcgi
 *
 * and spawn-fcgi starts it like every other server of the benchmark, with
 * the listening socket on fd 0 (FCGX_InitRequest's sock 0 is
 * FCGI_LISTENSOCK_FILENO). One process, one request at a time.
 *
 *     hello_fcgi               stock libfcgi: FCGX_Finish_r closes each
 *                              connection with shutdown(SHUT_WR), then
 *                              waits (up to 2 s) until the web server
 *                              closes its end: one more round trip and
 *                              sleep per request (os_unix.c, OS_Close)
 *     hello_fcgi --no-linger   FCGX_Detach first, so that FCGX_Finish_r
 *                              only close()s: the fewest syscalls libfcgi
 *                              can do (accept, poll, read, write, close)
 *
 * Built with -DNO_LINGER it never lingers, without an argument: that is
 * how mod_fcgid, which passes none, runs it (bench.py, section 3).
 */
#include <fcgiapp.h>
#include <stdio.h>
#include <string.h>

static const char response[] =
    "Status: 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 14\r\n"
    "\r\n"
    "Hello, world!\n";

int main(int argc, char **argv)
{
    FCGX_Request req;
    /* mod_fcgid runs a script without arguments: built with -DNO_LINGER
     * (bench.py's hello_fcgi_nl), it does not linger either. */
#ifdef NO_LINGER
    int no_linger = 1;
#else
    int no_linger = argc > 1 && strcmp(argv[1], "--no-linger") == 0;
#endif

    if (FCGX_Init() != 0 || FCGX_InitRequest(&req, 0, 0) != 0) {
        fprintf(stderr, "hello_fcgi: cannot initialise libfcgi\n");
        return 1;
    }
    while (FCGX_Accept_r(&req) >= 0) {
        /* Read the body to its end, as a responder must before it closes
         * (nginx sends an empty one for GET). */
        char buf[4096];
        while (FCGX_GetStr(buf, sizeof buf, req.in) > 0)
            ;
        FCGX_PutStr(response, sizeof response - 1, req.out);
        if (no_linger)
            FCGX_Detach(&req);
        FCGX_Finish_r(&req);
    }
    return 0;
}
