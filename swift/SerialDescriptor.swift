// The caller's serial descriptors as the QEMU engine hands them to QEMU,
// without QEMU changing anything the caller sees.
//
// QEMU sets O_NONBLOCK on its stdin and stdout. On a description shared
// with the caller that flag would be the caller's too (a terminal, the
// caller's end of a pipe, the host's stdout as a journal socket: the
// host's own reads and writes then fail with EAGAIN, and the flag stays
// after the VM). So:
// - pipes and terminals are reopened through /proc/self/fd (a new open file
//   description of the same pipe or terminal, with flags of its own);
// - everything else (sockets, regular files, a pipe that cannot be
//   reopened) stays in the bridge: QEMU gets a pipe, and a relay thread
//   (csupport/vmz_relay.c) copies between it and the caller's descriptor.

#if os(Linux)
import Glibc

struct SerialDescriptor {
    /// Owned: a private description (given to QEMU as it is), or a
    /// duplicate of the caller's descriptor (relayed).
    private(set) var fd: Int32
    let reading: Bool
    let relayed: Bool

    /// A private copy of the caller's `fd`, for QEMU's stdin (`reading`)
    /// or stdout.
    init(of callerFD: Int32, reading: Bool) throws {
        self.reading = reading
        var st = stat()
        if fstat(callerFD, &st) == 0 {
            let kind = st.st_mode & S_IFMT
            if kind == S_IFIFO || kind == S_IFCHR {
                // O_NONBLOCK only for the open itself: opening a pipe's
                // read end must not wait for a writer (and a write end with
                // no reader fails with ENXIO: then relay).
                let flags = (reading ? O_RDONLY : O_WRONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK
                let copy = open("/proc/self/fd/\(callerFD)", flags)
                if copy >= 0 {
                    _ = fcntl(copy, F_SETFL, fcntl(copy, F_GETFL) & ~O_NONBLOCK)
                    defer { if copy <= 2 { Glibc.close(copy) } }
                    // Above stdio, as duplicate() does.
                    fd = copy > 2 ? copy : try duplicate(copy)
                    relayed = false
                    return
                }
                log(.debug, "cannot reopen descriptor \(callerFD) (\(String(cString: strerror(errno)))): relaying it")
            } else {
                log(.debug, "descriptor \(callerFD) is \(fileKind(st.st_mode)): relaying it, so QEMU cannot change its flags")
            }
        }
        fd = try duplicate(callerFD)
        relayed = true
    }

    /// The descriptor QEMU gets for this launch. For a relayed one, a new
    /// pipe whose other end a relay thread now owns (with its own copy of
    /// ours); the returned end is appended to `opened` (the caller closes
    /// it after the spawn).
    func forChild(opened: inout [Int32]) throws -> Int32 {
        guard relayed else { return fd }
        var ends: [Int32] = [-1, -1]
        let rc = vmz_pipe_cloexec(&ends)
        if rc != 0 { throw BridgeError.system("pipe2", rc, "serial relay") }
        let (childEnd, relayEnd) = reading ? (ends[0], ends[1]) : (ends[1], ends[0])
        opened.append(childEnd)
        let mine: Int32
        do {
            mine = try duplicate(fd)
        } catch {
            Glibc.close(relayEnd)
            throw error
        }
        let started = reading ? vmz_relay_start(mine, relayEnd) : vmz_relay_start(relayEnd, mine)
        if started != 0 {
            Glibc.close(mine)
            Glibc.close(relayEnd)
            throw BridgeError.system("pthread_create", started, "serial relay")
        }
        return childEnd
    }

    mutating func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}
#endif
