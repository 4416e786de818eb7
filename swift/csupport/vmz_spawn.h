/* The Linux engine's process spawning (internal, not ABI; Linux only).
 *
 * vmz_spawn: starts a child process for the Linux engine.
 *
 * Why C: between fork() and exec() only async-signal-safe calls are allowed,
 * which Swift cannot promise. Why a dedicated thread: PR_SET_PDEATHSIG fires
 * when the *thread* that forked the child exits, so every child is forked
 * from one bridge thread that lives as long as the process. The child gets
 * SIGKILL when the process that started it dies, however it dies. */
#ifndef VMZ_SPAWN_H
#define VMZ_SPAWN_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Forks and execs `path` with `argv` (NULL-terminated). In the child,
 * descriptor i becomes a copy of fds[i] for i < nfds (fds[i] == -1: closed),
 * every other descriptor is closed, the signal mask and dispositions are
 * reset, and the child gets its own process group (a terminal's Ctrl-C is
 * the host's to handle, not QEMU's).
 * Returns 0 and sets *pid and *pidfd (a pidfd, close-on-exec), or returns an
 * errno value (the exec's own errno when exec failed).
 * The child is cloned with exit signal 0: it sends no SIGCHLD, whatever the
 * host does with SIGCHLD it is never reaped by anyone but vmz_wait_child,
 * and waitpid(-1) in the host does not see it. When the host ignores
 * SIGCHLD (exec makes the exit signal SIGCHLD again, and the kernel would
 * reap the program behind our back), the child is a supervisor that runs
 * the program as its own child and ends as the program ended; *pid is the
 * supervisor's (killing it kills the program). */
#ifdef __linux__
int vmz_spawn(const char *path, char *const argv[], const int *fds, int nfds,
              pid_t *pid, int *pidfd);

/* A directory of bind mounts made for one child (vmz_spawn_mounted): in a
 * mount namespace of its own, a tmpfs is mounted on `root` (an existing
 * directory), a subdirectory `names[i]` is made for each source and the
 * directory `paths[i]` (as this process sees it, even below `root`) is
 * bind-mounted on it, read-only where `read_only[i]` (at most 64); then the tmpfs itself
 * becomes read-only. Nothing of it is visible outside the child, and it
 * all goes away with the child. Non-recursive binds: mounts below a source
 * are not seen. With `user_namespace`, the child first enters a new user
 * namespace that maps only its own user and group (for a process without
 * CAP_SYS_ADMIN; the capabilities it gets there end at exec). */
struct vmz_spawn_mounts {
    const char *root;
    int count;
    char *const *paths;
    char *const *names;
    const int *read_only;
    int user_namespace;
};

/* The steps of vmz_spawn_mounts, for error reports. */
enum {
    VMZ_MOUNT_STEP_NONE = 0,
    VMZ_MOUNT_STEP_UNSHARE,
    VMZ_MOUNT_STEP_ID_MAP,
    VMZ_MOUNT_STEP_PRIVATE,
    VMZ_MOUNT_STEP_OPEN,
    VMZ_MOUNT_STEP_PROGRAM,
    VMZ_MOUNT_STEP_TMPFS,
    VMZ_MOUNT_STEP_MKDIR,
    VMZ_MOUNT_STEP_BIND,
    VMZ_MOUNT_STEP_READ_ONLY,
    VMZ_MOUNT_STEP_ROOT_READ_ONLY,
};

/* vmz_spawn, with `mounts` made in the child before exec. When that fails,
 * returns the errno and sets *step (a VMZ_MOUNT_STEP_*) and *which (the
 * index of the source it failed on, or -1); *step is
 * VMZ_MOUNT_STEP_NONE for any other failure. */
int vmz_spawn_mounted(const char *path, char *const argv[], const int *fds, int nfds,
                      const struct vmz_spawn_mounts *mounts, pid_t *pid, int *pidfd,
                      int *step, int *which);

/* Waits for (and reaps) a child of vmz_spawn: waitid(P_PID, WEXITED|__WALL).
 * Returns 0 and sets *code (CLD_EXITED, CLD_KILLED, CLD_DUMPED) and
 * *status (the exit status or the signal number), or returns an errno. */
int vmz_wait_child(pid_t pid, int *code, int *status);

/* pipe2(fds, O_CLOEXEC), which Swift's Glibc module does not export.
 * Returns 0 or an errno value. */
int vmz_pipe_cloexec(int fds[2]);
#endif

#ifdef __cplusplus
}
#endif

#endif
