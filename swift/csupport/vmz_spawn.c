/* See vmz_spawn.h. */
#ifdef __linux__
#define _GNU_SOURCE
#endif
#include "vmz_spawn.h"

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

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef __WALL
#define __WALL 0x40000000
#endif

#define VMZ_SPAWN_MAX_FDS 64

struct request {
    const char *path;
    char *const *argv;
    const int *fds;
    int nfds;
    pid_t pid;
    int pidfd;
    int result;
    int done;
    int supervise;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct request *pending;
static int thread_error;

/* The host ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT): then the kernel
 * reaps a child that has exec'd as soon as it exits (exec resets the exit
 * signal to SIGCHLD), and its status is lost. So the child stays a small
 * supervisor that never execs: it runs the program as its own child (which
 * it may reap: its dispositions are the defaults), and ends the way that
 * child ended (the same exit status, or killed by the same signal). Killing
 * the supervisor kills the program (PR_SET_PDEATHSIG). Async-signal-safe
 * calls only. */
static void supervise(const struct request *r, int report_fd) {
    pid_t supervisor = getpid();
    pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, 0UL, 0UL, 0UL);
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != supervisor)
            _exit(127);
        execv(r->path, r->argv);
        int err = errno;
        (void)!write(report_fd, &err, sizeof err);
        _exit(127);
    }
    int err = errno;
    if (pid < 0) {
        (void)!write(report_fd, &err, sizeof err);
        _exit(127);
    }
    /* The program has the descriptors now; the parent reads the report
     * pipe until the program's exec closes its copy. */
    syscall(SYS_close_range, 0U, ~0U, 0);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            _exit(127);
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        sigset_t one;
        signal(sig, SIG_DFL);
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        kill(getpid(), sig);
        _exit(128 + sig);
    }
    _exit(WEXITSTATUS(status));
}

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
            high[i] = fcntl(r->fds[i], F_DUPFD, r->nfds);
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
    if (r->supervise)
        supervise(r, report_fd);
    execv(r->path, r->argv);
fail:
    err = errno;
report:
    (void)!write(report_fd, &err, sizeof err);
    _exit(127);
}

int vmz_wait_child(pid_t pid, int *code, int *status) {
    siginfo_t info;
    for (;;) {
        memset(&info, 0, sizeof info);
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | __WALL) == 0)
            break;
        if (errno != EINTR)
            return errno;
    }
    *code = info.si_code;
    *status = info.si_status;
    return 0;
}

static void spawn_now(struct request *r) {
    int report[2];
    struct sigaction chld;
    if (sigaction(SIGCHLD, NULL, &chld) == 0)
        r->supervise = chld.sa_handler == SIG_IGN || (chld.sa_flags & SA_NOCLDWAIT) != 0;
    pid_t parent = getpid();
    if (pipe2(report, O_CLOEXEC) != 0) {
        r->result = errno;
        return;
    }
    /* The report pipe's write end must not land in the child's target range. */
    if (report[1] < r->nfds) {
        int moved = fcntl(report[1], F_DUPFD_CLOEXEC, r->nfds);
        if (moved < 0) {
            r->result = errno;
            close(report[0]);
            close(report[1]);
            return;
        }
        close(report[1]);
        report[1] = moved;
    }
    /* clone() with exit signal 0 instead of fork(): the child sends no
     * SIGCHLD, so the host's SIGCHLD disposition (SIG_IGN or SA_NOCLDWAIT
     * would reap it behind our back and lose its status) and its own
     * waitpid(-1) loops never touch it; only waitid(__WALL) on its pid
     * (vmz_wait_child) reaps it. CLONE_PIDFD hands back a pidfd
     * (close-on-exec) without a race with the child's exit. */
    int pidfd = -1;
    pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)CLONE_PIDFD, 0UL, &pidfd, 0UL, 0UL);
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
        int code, status;
        vmz_wait_child(pid, &code, &status);
        close(pidfd);
        r->result = child_err ? child_err : ECHILD;
        return;
    }
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

/* After fork() the child has no spawner thread (only the forking thread
 * survives): the next vmz_spawn in the child starts its own. */
static pid_t spawner_pid;

static void reset_after_fork(void) {
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&cond, NULL);
    pending = NULL;
    spawner_pid = 0;
}

static void start_spawner(void) {
    pthread_t t;
    static int registered;
    if (!registered) {
        registered = 1;
        pthread_atfork(NULL, NULL, reset_after_fork);
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    thread_error = pthread_create(&t, &attr, spawner, NULL);
    pthread_attr_destroy(&attr);
    if (thread_error == 0)
        spawner_pid = getpid();
}

int vmz_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) == 0 ? 0 : errno;
}

int vmz_spawn(const char *path, char *const argv[], const int *fds, int nfds,
              pid_t *pid, int *pidfd) {
    if (nfds < 0 || nfds > VMZ_SPAWN_MAX_FDS)
        return EINVAL;
    pthread_mutex_lock(&lock);
    if (spawner_pid != getpid())
        start_spawner();
    pthread_mutex_unlock(&lock);
    if (thread_error)
        return thread_error;
    struct request r = {path, argv, fds, nfds, -1, -1, 0, 0, 0};
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
