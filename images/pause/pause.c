/*
 * kedge pause: PID 1 of every pod sandbox.
 *
 * The process that holds a pod's namespaces (network, IPC, and PID when the
 * pod shares its process namespace). It does nothing but wait:
 *   - SIGINT and SIGTERM end it with exit status 0 (a PID 1 ignores any
 *     signal it has no handler for, so the handlers are what make
 *     `StopPodSandbox` / `ctr task kill` work without SIGKILL);
 *   - SIGCHLD reaps every exited child, because as PID 1 of a shared PID
 *     namespace it inherits the orphans of all the pod's containers;
 *   - otherwise it sleeps in pause(2) forever.
 *
 * No stdio, so that a static build stays small: with musl
 * (`musl-gcc -static -Os -s`) about 13 KiB, with glibc
 * (`gcc -static -Os -s`) about 680 KiB. Both behave the same.
 *
 * `pause -v` prints the version and exits 0.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PAUSE_VERSION
#define PAUSE_VERSION "3.10"
#endif

static void say(int fd, const char *msg) {
    size_t len = strlen(msg);
    while (len > 0) {
        ssize_t n = write(fd, msg, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        msg += n;
        len -= (size_t)n;
    }
}

/* Only async-signal-safe calls in handlers: write(2) and _exit(2). */
static void on_shutdown(int signo) {
    say(STDERR_FILENO, signo == SIGINT ? "pause: got SIGINT, shutting down\n"
                                       : "pause: got SIGTERM, shutting down\n");
    _exit(0);
}

static void on_child(int signo) {
    int saved_errno = errno;
    (void)signo;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved_errno;
}

int main(int argc, char **argv) {
    struct sigaction sa;
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) {
            say(STDOUT_FILENO, "kedge pause " PAUSE_VERSION "\n");
            return 0;
        }
    }

    if (getpid() != 1)
        say(STDERR_FILENO, "pause: warning: not running as PID 1\n");

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_shutdown;
    if (sigaction(SIGINT, &sa, NULL) < 0)
        return 1;
    if (sigaction(SIGTERM, &sa, NULL) < 0)
        return 2;

    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    if (sigaction(SIGCHLD, &sa, NULL) < 0)
        return 3;

    /* Children that exited before the handler was installed. */
    on_child(SIGCHLD);

    for (;;)
        pause();
    return 42; /* not reached */
}
