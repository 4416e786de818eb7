/* See vmz_spawn.h. */
#ifdef __linux__
#define _GNU_SOURCE
#endif
#include "vmz_spawn.h"

unsigned long long vmz_fnv1a64(const void *data, unsigned long len) {
    const unsigned char *p = data;
    unsigned long long h = 0xcbf29ce484222325ULL;
    for (unsigned long i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#ifdef __linux__
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

#define VMZ_SPAWN_MAX_FDS 16

struct request {
    const char *path;
    char *const *argv;
    const int *fds;
    int nfds;
    pid_t pid;
    int pidfd;
    int result;
    int done;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct request *pending;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int thread_error;

/* Runs in the child: only async-signal-safe calls from here on. */
static void child(const struct request *r, pid_t parent, int report_fd) {
    int err;
    int high[VMZ_SPAWN_MAX_FDS];
    sigset_t all;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127); /* the parent is already gone */
    setpgid(0, 0);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);

    /* Move every source above the target range first, so that dup2 into
     * place cannot clobber a source that is itself a low number. */
    for (int i = 0; i < r->nfds; i++) {
        high[i] = -1;
        if (r->fds[i] >= 0) {
            high[i] = fcntl(r->fds[i], F_DUPFD, VMZ_SPAWN_MAX_FDS + 3);
            if (high[i] < 0)
                goto fail;
        }
    }
    for (int i = 0; i < r->nfds; i++) {
        if (high[i] >= 0) {
            if (dup2(high[i], i) < 0)
                goto fail;
        } else {
            close(i);
        }
    }
    /* The report pipe must survive until exec (it is close-on-exec). */
    if (report_fd < r->nfds) {
        err = EBADF;
        goto report;
    }
    for (int fd = r->nfds; fd < report_fd; fd++)
        close(fd);
    if (syscall(SYS_close_range, report_fd + 1, ~0U, 0) != 0) {
        for (int fd = report_fd + 1; fd < 65536; fd++)
            close(fd);
    }
    execv(r->path, r->argv);
fail:
    err = errno;
report:
    (void)!write(report_fd, &err, sizeof err);
    _exit(127);
}

static void spawn_now(struct request *r) {
    int report[2];
    pid_t parent = getpid();
    if (pipe2(report, O_CLOEXEC) != 0) {
        r->result = errno;
        return;
    }
    /* The report pipe's write end must not land in the child's target range. */
    if (report[1] < r->nfds) {
        int moved = fcntl(report[1], F_DUPFD_CLOEXEC, VMZ_SPAWN_MAX_FDS + 3);
        if (moved < 0) {
            r->result = errno;
            close(report[0]);
            close(report[1]);
            return;
        }
        close(report[1]);
        report[1] = moved;
    }
    pid_t pid = fork();
    if (pid < 0) {
        r->result = errno;
        close(report[0]);
        close(report[1]);
        return;
    }
    if (pid == 0)
        child(r, parent, report[1]);
    close(report[1]);

    int child_err = 0;
    ssize_t n;
    do {
        n = read(report[0], &child_err, sizeof child_err);
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n > 0) {
        /* exec failed: reap the child, report its errno. */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        r->result = child_err ? child_err : ECHILD;
        return;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        int e = errno;
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        r->result = e;
        return;
    }
    fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    r->pid = pid;
    r->pidfd = pidfd;
    r->result = 0;
}

/* The spawner thread: lives as long as the process, so that the children's
 * PR_SET_PDEATHSIG fires only when the process dies. */
static void *spawner(void *unused) {
    (void)unused;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* the host's signals are not ours */
    pthread_mutex_lock(&lock);
    for (;;) {
        while (pending == NULL)
            pthread_cond_wait(&cond, &lock);
        struct request *r = pending;
        pending = NULL;
        pthread_mutex_unlock(&lock);
        spawn_now(r);
        pthread_mutex_lock(&lock);
        r->done = 1;
        pthread_cond_broadcast(&cond);
    }
    return NULL;
}

static void start_spawner(void) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    thread_error = pthread_create(&t, &attr, spawner, NULL);
    pthread_attr_destroy(&attr);
}

int vmz_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) == 0 ? 0 : errno;
}

int vmz_spawn(const char *path, char *const argv[], const int *fds, int nfds,
              pid_t *pid, int *pidfd) {
    if (nfds < 0 || nfds > VMZ_SPAWN_MAX_FDS)
        return EINVAL;
    pthread_once(&once, start_spawner);
    if (thread_error)
        return thread_error;
    struct request r = {path, argv, fds, nfds, -1, -1, 0, 0};
    pthread_mutex_lock(&lock);
    while (pending != NULL)
        pthread_cond_wait(&cond, &lock);
    pending = &r;
    pthread_cond_broadcast(&cond);
    while (!r.done)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    if (r.result == 0) {
        *pid = r.pid;
        *pidfd = r.pidfd;
    }
    return r.result;
}
#endif
