/*
 * storm.c: the syscall storms that testbed/bench/ebpf_storm.py times with
 * and without the agent attached. Compiled by that script (`cc -O2
 * -pthread`); kept in C so the driver's own overhead is a few instructions
 * around each syscall and the slowdown is the kernel's (tracepoints, eBPF
 * programs, ring buffer) and not an interpreter's.
 *
 *     storm MODE OPS [WORKERS] [PORT] [RATE]
 *
 * MODE:
 *   exec        fork + execve("/bin/true") + waitpid: one fork, one exec and
 *               one exit event per op.
 *   tcp         socket + connect to 127.0.0.1:PORT + close, PORT closed:
 *               ECONNREFUSED (checked), one connect event per op.
 *   tcp-listen  the same to a listener this program opens itself (an
 *               accept thread takes and closes every connection).
 *   udp         connect() a UDP socket to 127.0.0.1:PORT again and again:
 *               no packet is sent, so this is the cheapest connect the
 *               kernel has, the way to push the event rate past what TCP
 *               allows.
 *   open        open("/usr/bin/true", O_RDONLY) + close: a path that no
 *               default file selection holds, so no event leaves the
 *               kernel; what the in-kernel filter costs every open.
 *
 * WORKERS (default 1) processes share the OPS between them; the clock runs
 * from before the first fork to the last worker's exit, so the figure is
 * the storm's wall-clock rate. RATE (ops/s for the whole storm, 0 or absent:
 * as fast as possible) paces the workers, to hold the agent at a known event
 * rate (the budget is stated at 100 k events/s) rather than at whatever the
 * machine reaches. PORT is ignored by exec and tcp-listen (pass 0).
 *
 * Prints one line, parsed by the script:
 *   mode=tcp ops=1000000 workers=1 rate=0 failures=0 elapsed_s=6.123456 ops_per_s=163311.2
 * Exit status 1 with a message on stderr if any op did not do what the mode
 * says (a port that answers when it should refuse, a child that fails):
 * a storm that silently does something else measures nothing.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>

enum mode { MODE_EXEC, MODE_TCP, MODE_TCP_LISTEN, MODE_UDP, MODE_OPEN };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "storm: %s: %s\n", what, strerror(errno));
    exit(1);
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

/* Paces a worker: at most `rate` ops/s from `started`. Checked every
 * `pace_every` ops (64 for the sub-microsecond connects, so the clock reads
 * cost nothing next to the syscalls; every op for exec); a worker that
 * falls behind catches up without sleeping (the rate is an average, not a
 * cap per instant). */
static double worker_rate;
static double worker_started;
static long pace_every = 64;

static void pace(long done) {
    if (worker_rate <= 0 || done % pace_every != 0)
        return;
    double due = worker_started + (double)done / worker_rate;
    double ahead = due - now_s();
    if (ahead > 0) {
        struct timespec ts = {.tv_sec = (time_t)ahead, .tv_nsec = (long)((ahead - (double)(time_t)ahead) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* Returns the number of ops that failed (0 when the storm went as meant). */
static long run_exec(long ops) {
    char *const argv[] = {"/bin/true", NULL};
    char *const envp[] = {NULL};
    long failures = 0;
    for (long i = 0; i < ops; i++) {
        pace(i);
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            execve(argv[0], argv, envp);
            _exit(127);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0)
            die("waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failures++;
    }
    return failures;
}

static long run_tcp(long ops, int port, int expect_refused) {
    struct sockaddr_in addr = loopback(port);
    /* Linger 0: close sends RST instead of leaving TIME_WAIT behind, or a
     * million connects to a listener would run out of ephemeral ports. */
    struct linger no_linger = {.l_onoff = 1, .l_linger = 0};
    long failures = 0;
    for (long i = 0; i < ops; i++) {
        pace(i);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            die("socket");
        int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
        if (expect_refused ? !(rc < 0 && errno == ECONNREFUSED) : rc != 0) {
            if (failures++ == 0)
                fprintf(stderr, "storm: connect to 127.0.0.1:%d: %s (expected %s)\n", port,
                        rc == 0 ? "connected" : strerror(errno), expect_refused ? "ECONNREFUSED" : "success");
        }
        if (!expect_refused)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &no_linger, sizeof no_linger);
        close(fd);
    }
    return failures;
}

static long run_udp(long ops, int port) {
    struct sockaddr_in addr = loopback(port);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        die("socket");
    long failures = 0;
    for (long i = 0; i < ops; i++) {
        pace(i);
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
            failures++;
    }
    close(fd);
    return failures;
}

static long run_open(long ops) {
    long failures = 0;
    for (long i = 0; i < ops; i++) {
        pace(i);
        int fd = open("/usr/bin/true", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            failures++;
        else
            close(fd);
    }
    return failures;
}

static void *accept_loop(void *arg) {
    int listener = *(int *)arg;
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd >= 0)
            close(fd);
    }
    return NULL;
}

/* A listener on an ephemeral loopback port, served by a thread of this
 * (parent) process; the workers are forked after it exists. */
static int open_listener(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        die("socket");
    struct sockaddr_in addr = loopback(0);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        die("bind");
    if (listen(fd, 4096) != 0)
        die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0)
        die("getsockname");
    static int listener;
    listener = fd;
    pthread_t thread;
    if (pthread_create(&thread, NULL, accept_loop, &listener) != 0)
        die("pthread_create");
    return ntohs(addr.sin_port);
}

static long run_mode(enum mode mode, long ops, int port) {
    switch (mode) {
    case MODE_EXEC:
        return run_exec(ops);
    case MODE_TCP:
        return run_tcp(ops, port, 1);
    case MODE_TCP_LISTEN:
        return run_tcp(ops, port, 0);
    case MODE_UDP:
        return run_udp(ops, port);
    case MODE_OPEN:
        return run_open(ops);
    }
    return ops;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: storm exec|tcp|tcp-listen|udp|open OPS [WORKERS] [PORT] [RATE]\n");
        return 2;
    }
    enum mode mode;
    if (strcmp(argv[1], "exec") == 0)
        mode = MODE_EXEC;
    else if (strcmp(argv[1], "tcp") == 0)
        mode = MODE_TCP;
    else if (strcmp(argv[1], "tcp-listen") == 0)
        mode = MODE_TCP_LISTEN;
    else if (strcmp(argv[1], "udp") == 0)
        mode = MODE_UDP;
    else if (strcmp(argv[1], "open") == 0)
        mode = MODE_OPEN;
    else {
        fprintf(stderr, "storm: unknown mode %s\n", argv[1]);
        return 2;
    }
    long ops = atol(argv[2]);
    int workers = argc > 3 ? atoi(argv[3]) : 1;
    int port = argc > 4 ? atoi(argv[4]) : 0;
    double rate = argc > 5 ? atof(argv[5]) : 0;
    if (ops <= 0 || workers <= 0 || workers > 64 || rate < 0) {
        fprintf(stderr, "storm: OPS must be > 0, WORKERS 1 to 64, RATE >= 0\n");
        return 2;
    }
    if ((mode == MODE_TCP || mode == MODE_UDP) && (port <= 0 || port > 65535)) {
        fprintf(stderr, "storm: mode %s needs a PORT\n", argv[1]);
        return 2;
    }

    /* The listener is set up before the clock starts: it is not the storm. */
    if (mode == MODE_TCP_LISTEN)
        port = open_listener();

    /* Failures travel back through a pipe: one long per worker. */
    int pipefd[2];
    if (pipe(pipefd) != 0)
        die("pipe");
    double started = now_s();
    worker_started = started;
    worker_rate = rate / workers;
    if (mode == MODE_EXEC)
        pace_every = 1;
    for (int w = 0; w < workers; w++) {
        long share = ops / workers + (w < ops % workers ? 1 : 0);
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            long failures = run_mode(mode, share, port);
            if (write(pipefd[1], &failures, sizeof failures) != sizeof failures)
                _exit(3);
            _exit(0);
        }
    }
    long failures = 0;
    for (int w = 0; w < workers; w++) {
        int status;
        if (wait(&status) < 0)
            die("wait");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "storm: a worker died (status %d)\n", status);
            return 1;
        }
    }
    double elapsed = now_s() - started;
    for (int w = 0; w < workers; w++) {
        long f;
        if (read(pipefd[0], &f, sizeof f) != sizeof f)
            die("read");
        failures += f;
    }
    printf("mode=%s ops=%ld workers=%d rate=%.0f failures=%ld elapsed_s=%.6f ops_per_s=%.1f\n", argv[1], ops, workers,
           rate, failures, elapsed, (double)ops / elapsed);
    if (failures > 0) {
        fprintf(stderr, "storm: %ld of %ld ops did not do what mode %s means\n", failures, ops, argv[1]);
        return 1;
    }
    return 0;
}
