/*
 * The floor of fcgi-shim's design: a worker that answers at once, in C.
 *
 * fcgi-shim is two processes: the shim speaks FastCGI and hands each
 * request to a Python worker over a pipe (src/frame.rs). How fast can that
 * pair be with a worker that costs nothing? This program stands in for
 * Python: site.toml's `python` names it, the shim starts it as it starts
 * an interpreter (`python -c LOADER fcgi-shim-worker ...`, frames on fd 3
 * and fd 4), and it answers every request with the bytes apps/hello.py
 * sends, without reading the environ. What fcgi-shim then reaches is what
 * the shim, the hop and the web server cost; the rest of the gap to uWSGI
 * is Python's.
 *
 *     gcc -O2 -o null_worker null_worker.c
 *
 * It speaks just enough of the protocol: the loader's source and the `C`
 * frame are read and dropped, `K` says ready, and each `R` gets one `O`
 * and one `D` (code 0). `I` and `Z` frames are dropped (hello world gets
 * GETs, whose empty body comes whole in the `R`). EOF on fd 3 ends it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { FROM_SHIM = 3, TO_SHIM = 4, HEADER = 7 };

static const char head[] =
    "Status: 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 14\r\n"
    "\r\n"
    "Hello, world!\n";

/* Moves exactly n bytes from the shim (reading) or to it. The shim going
 * away ends the worker: EOF on fd 3 as it should, any other failure with
 * status 1. */
static void transfer(int reading, void *buf, size_t n)
{
    char *p = buf;
    while (n) {
        ssize_t k = reading ? read(FROM_SHIM, p, n) : write(TO_SHIM, p, n);
        if (k <= 0)
            exit(reading && k == 0 ? 0 : 1);
        p += k;
        n -= (size_t)k;
    }
}

static void read_all(void *buf, size_t n) { transfer(1, buf, n); }

static void write_all(const void *buf, size_t n) { transfer(0, (void *)buf, n); }

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads and drops n bytes. */
static void skip(size_t n)
{
    char buf[65536];
    while (n) {
        size_t k = n < sizeof buf ? n : sizeof buf;
        read_all(buf, k);
        n -= k;
    }
}

static size_t frame_head(unsigned char *out, char kind, const unsigned char *id, uint32_t len)
{
    out[0] = (unsigned char)kind;
    out[1] = id[0];
    out[2] = id[1];
    put_u32(out + 3, len);
    return HEADER;
}

int main(void)
{
    unsigned char h[HEADER];

    /* The loader's length-prefixed source, which Python would run. */
    read_all(h, 4);
    skip(get_u32(h));

    /* The `C` frame, answered by `K` with the pairs check shows. */
    read_all(h, HEADER);
    skip(get_u32(h + 3));
    {
        static const char *pairs[] = {"python", "null worker (C, no Python)",
                                      "executable", "null_worker", "sys_path", "",
                                      "import_ms", "0"};
        enum { N = sizeof pairs / sizeof *pairs };
        unsigned char buf[512];
        size_t at = HEADER + 4 + 4 * N;
        put_u32(buf + HEADER, N / 2);
        for (int i = 0; i < N; i++) {
            size_t l = strlen(pairs[i]);
            put_u32(buf + HEADER + 4 + 4 * i, (uint32_t)l);
            memcpy(buf + at, pairs[i], l);
            at += l;
        }
        frame_head(buf, 'K', h + 1, (uint32_t)(at - HEADER));
        write_all(buf, at);
    }

    /* Each answer is one write: `O` with the response, then `D`. */
    unsigned char answer[HEADER + sizeof head - 1 + HEADER + 1];
    for (;;) {
        read_all(h, HEADER);
        skip(get_u32(h + 3));
        if (h[0] != 'R')
            continue;
        size_t n = frame_head(answer, 'O', h + 1, sizeof head - 1);
        memcpy(answer + n, head, sizeof head - 1);
        n += sizeof head - 1;
        n += frame_head(answer + n, 'D', h + 1, 1);
        answer[n++] = 0;
        write_all(answer, n);
    }
}
