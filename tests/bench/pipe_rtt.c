/*
 * What one hand-off between two processes costs on this machine, the
 * thing every request pays at each hop (web server -> app -> web server;
 * for fcgi-shim also shim -> Python worker -> shim). Two processes pass
 * one byte back and forth over a pair of pipes, each blocking in read()
 * until the other writes: a round trip is two wake-ups.
 *
 *     pipe_rtt CPU_A CPU_B [ROUND_TRIPS]
 *
 * pins the parent to CPU_A and the child to CPU_B and prints the mean
 * round trip in nanoseconds. CPU_A == CPU_B: both on one CPU, each wake-up
 * a context switch; otherwise each wake-up crosses to the other CPU (an
 * IPI, and in a VM the wake of an idle virtual CPU). bench.py builds it
 * with `gcc -O2 -o pipe_rtt pipe_rtt.c` (section 9).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        perror("sched_setaffinity");
        exit(2);
    }
}

static void move_byte(int from, int to)
{
    char c;
    if (read(from, &c, 1) != 1 || write(to, &c, 1) != 1)
        exit(3);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pipe_rtt CPU_A CPU_B [ROUND_TRIPS]\n");
        return 2;
    }
    int cpu_a = atoi(argv[1]), cpu_b = atoi(argv[2]);
    long trips = argc > 3 ? atol(argv[3]) : 20000;
    int ping[2], pong[2];
    if (pipe(ping) != 0 || pipe(pong) != 0) {
        perror("pipe");
        return 2;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 2;
    }
    if (child == 0) {
        pin(cpu_b);
        for (long i = 0; i < trips; i++)
            move_byte(ping[0], pong[1]);
        _exit(0);
    }
    pin(cpu_a);
    /* A few trips first: both processes placed and warm. */
    long warm = trips / 10;
    struct timespec t0, t1;
    char c = 1;
    for (long i = 0; i < trips; i++) {
        if (i == warm)
            clock_gettime(CLOCK_MONOTONIC, &t0);
        if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1)
            return 3;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int status;
    waitpid(child, &status, 0);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    printf("%.0f\n", ns / (trips - warm));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 3;
}
