// virtiofsd, the Linux engine's virtio-fs backend: one daemon per shared
// directory per VM life, started before QEMU and stopped (SIGKILL, reaped)
// when QEMU ends. Forked by the bridge's spawner thread with
// PR_SET_PDEATHSIG (swift/csupport/vmz_spawn.c), so it never outlives the
// process that started it, even a SIGKILLed one.
//
// Which virtiofsd: the Rust one (rust-vmm, `cargo install virtiofsd`, or a
// distribution's `virtiofsd` package), because vmz hands it a listening
// socket (--fd) and needs --readonly. QEMU's older C virtiofsd (QEMU 7.2
// ships it as /usr/lib/qemu/virtiofsd; removed in QEMU 8) has neither and
// is skipped.

#if os(Linux)
import Glibc
import Dispatch

final class Virtiofsd {
    let share: Share
    let pid: pid_t
    private var source: DispatchSourceRead?
    /// How it ended, once reaped.
    private(set) var status: ChildExit?
    var exited: Bool { status != nil }

    static let installHint =
        "install the Rust virtiofsd: `cargo install virtiofsd` (needs libseccomp-dev and libcap-ng-dev; scripts/setup-debian.sh does it) or your distribution's virtiofsd package, or set VMZ_VIRTIOFSD to its path"

    // MARK: Finding it

    /// VMZ_VIRTIOFSD, else the first Rust virtiofsd among `virtiofsd` on
    /// PATH, /usr/libexec/virtiofsd and /usr/lib/qemu/virtiofsd.
    static func find() throws -> String {
        if let env = environment("VMZ_VIRTIOFSD") {
            guard access(env, X_OK) == 0 else {
                throw BridgeError(VMZ_ERROR_ENGINE_UNAVAILABLE, "VMZ_VIRTIOFSD=\(env) is not an executable file; \(installHint)")
            }
            guard isRust(env) else {
                throw BridgeError(
                    VMZ_ERROR_ENGINE_UNAVAILABLE,
                    "VMZ_VIRTIOFSD=\(env) is not the Rust virtiofsd (`--version` does not say \"virtiofsd 1.x\"); \(installHint)")
            }
            return env
        }
        var skipped: [String] = []
        let candidates = [findExecutable("virtiofsd"), "/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"]
        for case let path? in candidates where access(path, X_OK) == 0 {
            if isRust(path) { return path }
            skipped.append(path)
        }
        let note = skipped.isEmpty
            ? ""
            : " (\(skipped.map(quoted).joined(separator: ", ")): QEMU's older C virtiofsd, without the --fd and --readonly options vmz uses)"
        throw BridgeError(VMZ_ERROR_ENGINE_UNAVAILABLE, "shared directories need virtiofsd, and none usable was found\(note): \(installHint)")
    }

    /// What `--version` said about each binary (path, size, mtime): asked
    /// once per process and file version.
    private static var identified: [String: Bool] = [:]
    private static let identifiedLock = Lock()

    /// The Rust virtiofsd prints "virtiofsd 1.14.0"; the C one "virtiofsd
    /// version 7.2.x (...)".
    private static func isRust(_ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        let key = "\(path)|\(st.st_size)|\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
        if let known = identifiedLock.withLock({ identified[key] }) { return known }
        let words = (versionOutput(path) ?? "").split(separator: " ")
        let rust = words.count >= 2 && words[0] == "virtiofsd" && words[1].first?.isNumber == true
        log(.debug, "\(path): \(rust ? "the Rust virtiofsd" : "not the Rust virtiofsd")")
        identifiedLock.withLock { identified[key] = rust }
        return rust
    }

    /// The first line `path --version` prints (at most 2 s), or nil.
    private static func versionOutput(_ path: String) -> String? {
        var out: [Int32] = [-1, -1]
        guard vmz_pipe_cloexec(&out) == 0 else { return nil }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer {
            close(out[0])
            if null >= 0 { close(null) }
        }
        let argv: [String] = [path, "--version"]
        var args = argv.map { strdup($0) }
        args.append(nil)
        defer { for p in args { free(p) } }
        var pid: pid_t = -1
        var pidfd: Int32 = -1
        let fds = [null, out[1], null]
        let rc = vmz_spawn(path, &args, fds, Int32(fds.count), &pid, &pidfd)
        close(out[1])
        guard rc == 0 else { return nil }
        defer {
            kill(pid, SIGKILL)
            _ = ChildExit.reap(pid)
            close(pidfd)
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 256)
        let deadline = monotonicMilliseconds() + 2000
        while bytes.count < 4096 {
            var p = pollfd(fd: out[0], events: Int16(POLLIN), revents: 0)
            let left = deadline - monotonicMilliseconds()
            guard left > 0, poll(&p, 1, Int32(left)) > 0 else { break }
            let n = chunk.withUnsafeMutableBytes { read(out[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").first.map(String.init)
    }

    private static func monotonicMilliseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
    }

    // MARK: Running it

    /// Starts virtiofsd for `share`, serving the vhost-user `listener` (a
    /// listening Unix socket, already holding QEMU's connection in its
    /// backlog). Its stderr goes to `stderr` (errors only). `onExit` runs
    /// on `queue` if the daemon ends before `stop`.
    init(binary: String, share: Share, listener: Int32, stderr: Int32, queue: DispatchQueue,
         onExit: @escaping (Virtiofsd) -> Void) throws {
        self.share = share
        // A multi-directory share: virtiofsd serves a directory of bind
        // mounts made in its own mount namespace (vmz_spawn_mounted).
        let multi = !share.directories.isEmpty
        var args = [
            binary, "--fd=3", "--shared-dir", multi ? Virtiofsd.mountRoot : share.path, "--log-level", "error",
            // The daemon's cache policy: the guest caches what it reads
            // and revalidates on open (virtiofsd's default, said aloud).
            "--cache", "auto",
        ]
        if share.readOnly { args.append("--readonly") }
        // Without root the namespace sandbox needs user namespaces, which
        // many systems forbid: the daemon then runs as the user, seeing
        // what the user sees.
        if geteuid() != 0 { args += ["--sandbox", "none"] }
        log(.debug, "spawning: \(args.map(quoted).joined(separator: " "))")
        var cArgs = args.map { strdup($0) }
        cArgs.append(nil)
        defer { for p in cArgs { free(p) } }
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard null >= 0 else { throw BridgeError.system("open", errno, "/dev/null") }
        defer { close(null) }
        let fds = [null, null, stderr, listener]
        var childPid: pid_t = -1
        var pidfd: Int32 = -1
        var step: Int32 = 0
        var which: Int32 = -1
        var rc: Int32
        if multi {
            var paths = share.directories.map { strdup($0.path) }
            var names = share.directories.map { strdup($0.name) }
            defer { for p in paths + names { free(p) } }
            let readOnly = share.directories.map { Int32($0.readOnly ? 1 : 0) }
            rc = Virtiofsd.mountRoot.withCString { root in
                paths.withUnsafeMutableBufferPointer { p in
                    names.withUnsafeMutableBufferPointer { n in
                        readOnly.withUnsafeBufferPointer { ro in
                            var mounts = vmz_spawn_mounts(
                                root: root, count: Int32(p.count), paths: p.baseAddress,
                                names: n.baseAddress, read_only: ro.baseAddress,
                                user_namespace: geteuid() == 0 ? 0 : 1)
                            return vmz_spawn_mounted(
                                binary, &cArgs, fds, Int32(fds.count), &mounts, &childPid, &pidfd, &step, &which)
                        }
                    }
                }
            }
        } else {
            rc = vmz_spawn(binary, &cArgs, fds, Int32(fds.count), &childPid, &pidfd)
        }
        if rc != 0 && Int(step) != VMZ_MOUNT_STEP_NONE {
            throw BridgeError(
                VMZ_ERROR_START_FAILED,
                "cannot make the directories of \(share.name) for virtiofsd: \(Virtiofsd.describe(step: step, which: which, share)): \(String(cString: strerror(rc)))")
        }
        if rc != 0 {
            throw BridgeError(VMZ_ERROR_START_FAILED, "cannot run \(binary) for \(share.name): \(String(cString: strerror(rc)))")
        }
        pid = childPid
        log(.info, "virtiofsd started for \(share.name), pid \(pid)")
        let s = DispatchSource.makeReadSource(fileDescriptor: pidfd, queue: queue)
        s.setEventHandler { [weak self] in
            guard let self, !self.exited else { return }
            self.reap()
            onExit(self)
        }
        s.setCancelHandler { close(pidfd) }
        source = s
        s.resume()
    }

    // MARK: Several directories under one tag

    /// Where the daemon of a multi-directory share sees its directories:
    /// a tmpfs mounted over /tmp in the daemon's own mount namespace
    /// (the host's /tmp is untouched; it always exists, and nothing on
    /// the host's side is made or left). The directories are opened
    /// before it covers /tmp, so they may be below it.
    static let mountRoot = "/tmp"

    private static func describe(step: Int32, which: Int32, _ share: Share) -> String {
        let dir = which >= 0 && Int(which) < share.directories.count
            ? " \(quoted(share.directories[Int(which)].name))" : ""
        switch Int(step) {
        case VMZ_MOUNT_STEP_UNSHARE:
            return geteuid() == 0 ? "unshare(CLONE_NEWNS)" : "unshare(CLONE_NEWUSER | CLONE_NEWNS) (unprivileged user namespaces)"
        case VMZ_MOUNT_STEP_ID_MAP: return "the user namespace's uid/gid map"
        case VMZ_MOUNT_STEP_PRIVATE: return "making the mounts private"
        case VMZ_MOUNT_STEP_OPEN: return "opening directory\(dir)"
        case VMZ_MOUNT_STEP_PROGRAM: return "opening the program"
        case VMZ_MOUNT_STEP_TMPFS: return "a tmpfs on \(mountRoot)"
        case VMZ_MOUNT_STEP_MKDIR: return "the mount point of directory\(dir)"
        case VMZ_MOUNT_STEP_BIND: return "the bind mount of directory\(dir)"
        case VMZ_MOUNT_STEP_READ_ONLY: return "making directory\(dir) read-only"
        default: return "making the share's root read-only"
        }
    }

    /// Whether this process can make the mounts of a multi-directory
    /// share: root can; other users need unprivileged user namespaces,
    /// which a system may forbid. Throws a typed error that says so.
    static func checkMultiDirectory(_ shares: [Share]) throws {
        guard let share = shares.first(where: { !$0.directories.isEmpty }) else { return }
        if let why = userNamespaceRefusal(euid: geteuid(), read: readSmallFile) {
            throw BridgeError(
                VMZ_ERROR_SHARE,
                "\(share.name): several directories under one tag need, on Linux, root or unprivileged user namespaces, which this system forbids (\(why)): run as root, allow them, or share each directory under its own tag")
        }
    }

    /// Why a process of `euid` cannot make an unprivileged user namespace
    /// ("FILE is VALUE", the sysctl that forbids it, read with `read`), or
    /// nil when it can (root needs none).
    static func userNamespaceRefusal(euid: uid_t, read: (String) -> String?) -> String? {
        guard euid != 0 else { return nil }
        let forbidding = [
            ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
            ("/proc/sys/user/max_user_namespaces", "0"),
            ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1"),
        ]
        return forbidding.first { read($0.0) == $0.1 }.map { "\($0.0) is \($0.1)" }
    }

    /// The first line of a small file, or nil.
    private static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\n").first.map(String.init)
    }

    deinit { stop() }

    /// Kills the daemon (if it still runs) and reaps it. Idempotent. Call
    /// on the engine's queue.
    func stop() {
        if !exited {
            kill(pid, SIGKILL)
            reap()
        }
        source?.cancel()
        source = nil
    }

    private func reap() {
        status = ChildExit.reap(pid)
    }
}
#endif
