/* See vmz_relay.h. */
#ifdef __linux__
#define _GNU_SOURCE
#include "vmz_relay.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct relay {
    int from, to;
};

/* Waits until `fd` is ready for `events`, or `other` reports an error or
 * hang-up (POLLERR on a pipe's write end: its reader is gone). Returns 0
 * when ready, -1 to stop. */
static int wait_ready(int fd, short events, int other) {
    for (;;) {
        struct pollfd p[2] = {{fd, events, 0}, {other, 0, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (p[1].revents & (POLLERR | POLLHUP | POLLNVAL))
            return -1;
        if (p[0].revents & POLLNVAL)
            return -1;
        if (p[0].revents)
            return 0;
    }
}

static void *relay_main(void *arg) {
    struct relay r = *(struct relay *)arg;
    free(arg);
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* the host's signals are not ours */
    char buf[16384];
    for (;;) {
        if (wait_ready(r.from, POLLIN, r.to) != 0)
            break;
        ssize_t n = read(r.from, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break;
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = send(r.to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (w < 0 && errno == ENOTSOCK)
                w = write(r.to, buf + off, (size_t)(n - off));
            if (w > 0) {
                off += w;
            } else if (w < 0 && errno == EINTR) {
                continue;
            } else if (w < 0 && errno == EAGAIN) {
                if (wait_ready(r.to, POLLOUT, -1) != 0)
                    goto done;
            } else {
                goto done;
            }
        }
    }
done:
    close(r.from);
    close(r.to);
    return NULL;
}

int vmz_relay_start(int from, int to) {
    struct relay *r = malloc(sizeof *r);
    if (r == NULL)
        return ENOMEM;
    r->from = from;
    r->to = to;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int rc = pthread_create(&t, &attr, relay_main, r);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        free(r);
    return rc;
}
#endif
