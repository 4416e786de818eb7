// Small POSIX helpers shared by the engines, the QMP client and the
// kernel cache: environment, executables, quoting for messages,
// descriptors, Unix socket addresses.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An environment variable; nil when unset or empty.
func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    let s = String(cString: value)
    return s.isEmpty ? nil : s
}

/// The first executable file `name` in the directories of $PATH.
func findExecutable(_ name: String) -> String? {
    let path = environment("PATH") ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":") where !dir.isEmpty {
        let candidate = "\(dir)/\(name)"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}

/// A path quoted for messages, with control characters escaped.
func quoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        default:
            if u.value < 0x20 || u.value == 0x7f {
                out += "\\x" + String(u.value, radix: 16)
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

/// Duplicates a descriptor, close-on-exec, above stdio.
func duplicate(_ fd: Int32) throws -> Int32 {
    let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
    if copy < 0 { throw BridgeError.system("fcntl(F_DUPFD_CLOEXEC)", errno, "descriptor \(fd)") }
    return copy
}

/// Calls `body` with a Unix socket address for `path`; nil (without calling
/// it) when the path does not fit in `sockaddr_un`.
func withUnixAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T? {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let fits = withUnsafeMutableBytes(of: &addr.sun_path) { raw -> Bool in
        let bytes = Array(path.utf8)
        guard bytes.count < raw.count else { return false }
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
        return true
    }
    guard fits else { return nil }
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
}
