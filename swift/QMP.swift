// A QMP client for the QEMU engine: a small JSON reader (QMP sends one JSON
// object per line) and the socket plumbing. Linux only.

#if os(Linux)
import Glibc
import Dispatch

/// A parsed JSON value (only what QMP messages need).
indirect enum JSON: Equatable {
    case object([String: JSON])
    case array([JSON])
    case string(String)
    case number(Double)
    case bool(Bool)
    case null

    subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    var bool: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// Parses one JSON text; nil when malformed.
    static func parse(_ bytes: [UInt8]) -> JSON? {
        var p = JSONParser(bytes: bytes)
        guard let value = p.value() else { return nil }
        p.skipSpace()
        return p.index == bytes.count ? value : nil
    }
}

private struct JSONParser {
    let bytes: [UInt8]
    var index = 0
    var depth = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func skipSpace() {
        while index < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[index]) { index += 1 }
    }

    mutating func value() -> JSON? {
        skipSpace()
        guard index < bytes.count else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "{"): return object()
        case UInt8(ascii: "["): return array()
        case UInt8(ascii: "\""): return string().map(JSON.string)
        case UInt8(ascii: "t"): return literal("true", .bool(true))
        case UInt8(ascii: "f"): return literal("false", .bool(false))
        case UInt8(ascii: "n"): return literal("null", .null)
        default: return number()
        }
    }

    mutating func literal(_ word: String, _ v: JSON) -> JSON? {
        let w = Array(word.utf8)
        guard index + w.count <= bytes.count, Array(bytes[index..<index + w.count]) == w else { return nil }
        index += w.count
        return v
    }

    mutating func number() -> JSON? {
        let start = index
        while index < bytes.count, "+-0123456789.eE".utf8.contains(bytes[index]) { index += 1 }
        guard index > start, let d = Double(String(decoding: bytes[start..<index], as: UTF8.self))
        else { return nil }
        return .number(d)
    }

    mutating func object() -> JSON? {
        depth += 1
        defer { depth -= 1 }
        guard depth < 64 else { return nil }
        index += 1
        var out: [String: JSON] = [:]
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(out)
        }
        while true {
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\""), let key = string() else { return nil }
            skipSpace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
            index += 1
            guard let v = value() else { return nil }
            out[key] = v
            skipSpace()
            guard index < bytes.count else { return nil }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(out)
            } else {
                return nil
            }
        }
    }

    mutating func array() -> JSON? {
        depth += 1
        defer { depth -= 1 }
        guard depth < 64 else { return nil }
        index += 1
        var out: [JSON] = []
        skipSpace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(out)
        }
        while true {
            guard let v = value() else { return nil }
            out.append(v)
            skipSpace()
            guard index < bytes.count else { return nil }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(out)
            } else {
                return nil
            }
        }
    }

    mutating func string() -> String? {
        index += 1
        var out = [UInt8]()
        while index < bytes.count {
            let b = bytes[index]
            index += 1
            switch b {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { return nil }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0c)
                case UInt8(ascii: "u"):
                    guard index + 4 <= bytes.count,
                        let v = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16)
                    else { return nil }
                    index += 4
                    // Surrogates are replaced: QMP does not send them for
                    // anything this bridge reads.
                    let scalar = Unicode.Scalar(v) ?? "\u{FFFD}"
                    out.append(contentsOf: Array(String(scalar).utf8))
                default: out.append(e)
                }
            default:
                out.append(b)
            }
        }
        return nil
    }
}

/// The client end of a QMP connection. Lives on the engine's queue.
///
/// Every exchange is bounded: a command is sent within its deadline or not
/// at all, and its answer (matched by the command's `id`) is awaited until
/// the same deadline. Nothing is ever sent once the connection is closed:
/// the descriptor's number may by then belong to another socket of the
/// process, even another VM's.
final class QMPClient {
    private let fd: Int32
    private let queue: DispatchQueue
    private var source: DispatchSourceRead?
    private var buffer = [UInt8]()
    private(set) var isClosed = false
    private var nextID = 1
    /// Answers read while nobody waited for them yet, by id.
    private var answers: [Int: JSON] = [:]
    /// Ids whose answer is delivered to a closure.
    private var handlers: [Int: (String, (Result<JSON, BridgeError>) -> Void)] = [:]
    /// Ids whose caller gave up waiting: their late answers are dropped.
    private var abandoned = Set<Int>()
    /// Every message that is not an answer (the greeting, events), in order.
    var onMessage: ((JSON) -> Void)?
    /// Once, when the connection ends (QEMU closed it, or `disconnect`).
    var onClose: (() -> Void)?

    /// Connects to the listening socket `listener` (bound at `path`): the
    /// connection is queued in the listener's backlog, so this succeeds
    /// before QEMU runs, and no failure is left for after the spawn.
    init(path: String, queue: DispatchQueue) throws {
        self.queue = queue
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw BridgeError.system("socket", errno, "QMP") }
        guard let rc = withUnixAddress(path, { connect(fd, $0, $1) }) else {
            Glibc.close(fd)
            throw BridgeError(VMZ_ERROR_INTERNAL, "QMP socket path too long: \(path)")
        }
        if rc != 0 {
            let e = errno
            Glibc.close(fd)
            throw BridgeError.system("connect", e, "QMP")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Starts delivering messages to `onMessage`.
    func resume() {
        guard !isClosed else { return }
        let s = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        s.setEventHandler { [weak self] in self?.readAvailable() }
        source = s
        s.resume()
    }

    /// Reads what is there now; true at end of stream. Also used to drain
    /// the socket synchronously when QEMU has exited.
    @discardableResult
    func readAvailable() -> Bool {
        if isClosed { return true }
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                buffer.append(contentsOf: chunk[0..<n])
                deliverLines()
                if isClosed { return true }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN { return false }
            disconnect()
            return true
        }
    }

    private func deliverLines() {
        while let nl = buffer.firstIndex(of: 0x0a) {
            let line = Array(buffer[..<nl])
            buffer.removeSubrange(...nl)
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0d }) { continue }
            guard let msg = JSON.parse(line) else {
                log(.warn, "QMP: unparsable message: \(String(decoding: line, as: UTF8.self))")
                continue
            }
            if case .number(let n)? = msg["id"], msg["return"] != nil || msg["error"] != nil {
                let id = Int(n)
                if let (_, handler) = handlers.removeValue(forKey: id) {
                    handler(QMPClient.result(of: msg))
                } else if abandoned.remove(id) == nil {
                    answers[id] = msg
                }
            } else {
                onMessage?(msg)
            }
        }
    }

    private static func result(of answer: JSON) -> Result<JSON, BridgeError> {
        if let error = answer["error"] {
            let desc = error["desc"]?.string ?? "(no description)"
            return .failure(BridgeError(VMZ_ERROR_RUNTIME, "QEMU refused the command: \(desc)"))
        }
        return .success(answer["return"] ?? .null)
    }

    private func closedError(_ name: String) -> BridgeError {
        BridgeError(VMZ_ERROR_INVALID_STATE, "QEMU's QMP connection is closed (QEMU is exiting): \(name) not sent")
    }

    /// Sends `name` and returns its answer, both within `timeout` seconds.
    /// Errors: the connection is closed (INVALID_STATE, nothing sent), the
    /// deadline passed (TIMEOUT: QEMU is stopped or frozen), QEMU refused
    /// the command (RUNTIME, with QEMU's description).
    @discardableResult
    func execute(_ name: String, arguments: String? = nil, timeout: Double) throws -> JSON {
        let deadline = Deadline(seconds: timeout)
        let id = try send(name, arguments: arguments, deadline: deadline)
        while true {
            if let answer = answers.removeValue(forKey: id) {
                switch QMPClient.result(of: answer) {
                case .success(let value): return value
                case .failure(let e): throw BridgeError(e.code, "\(name): \(e.message)")
                }
            }
            if isClosed {
                throw BridgeError(VMZ_ERROR_INVALID_STATE, "QEMU closed its QMP connection before answering \(name)")
            }
            let left = deadline.milliseconds
            if left <= 0 {
                abandoned.insert(id)
                throw BridgeError(
                    VMZ_ERROR_TIMEOUT, "QEMU did not answer \(name) within \(seconds(timeout)) (is QEMU stopped or frozen?)")
            }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, left)
            readAvailable()
        }
    }

    /// Sends `name` within `timeout` seconds; its answer goes to `answer`
    /// on the queue when it arrives (never if the connection closes first).
    func execute(
        _ name: String, timeout: Double, answer: @escaping (Result<JSON, BridgeError>) -> Void
    ) throws {
        let id = try send(name, arguments: nil, deadline: Deadline(seconds: timeout))
        if let early = answers.removeValue(forKey: id) {
            answer(QMPClient.result(of: early))
        } else {
            handlers[id] = (name, answer)
        }
    }

    /// Writes one command with a fresh id, whole or not at all (a command
    /// cut in half would corrupt the stream: the connection is then closed).
    private func send(_ name: String, arguments: String?, deadline: Deadline) throws -> Int {
        guard !isClosed else { throw closedError(name) }
        let id = nextID
        nextID += 1
        var text = "{\"execute\": \(quoted(name)), \"id\": \(id)"
        if let arguments { text += ", \"arguments\": \(arguments)" }
        text += "}\n"
        log(.trace, "QMP -> \(text.dropLast())")
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if n > 0 {
                offset += n
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && errno == EAGAIN {
                let left = deadline.milliseconds
                if left <= 0 {
                    if offset > 0 { disconnect() }
                    throw BridgeError(
                        VMZ_ERROR_TIMEOUT,
                        "QEMU did not read the QMP command \(name) within \(seconds(deadline.total)) (is QEMU stopped or frozen?)")
                }
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&p, 1, left)
            } else {
                let e = errno
                disconnect()
                if e == EPIPE || e == ECONNRESET { throw closedError(name) }
                throw BridgeError.system("send", e, "QMP \(name)")
            }
        }
        return id
    }

    func disconnect() {
        if isClosed { return }
        isClosed = true
        if let source {
            // The source owns the descriptor from here: close it when the
            // cancellation is complete, never while dispatch still watches it.
            let fd = self.fd
            source.setCancelHandler { Glibc.close(fd) }
            source.cancel()
            self.source = nil
        } else {
            Glibc.close(fd)
        }
        handlers = [:]
        answers = [:]
        let closed = onClose
        onClose = nil
        closed?()
    }

    deinit {
        onClose = nil
        disconnect()
    }
}

/// A point in time on the monotonic clock, `seconds` from its creation.
struct Deadline {
    let total: Double
    private let end: UInt64

    init(seconds: Double) {
        total = seconds
        end = Deadline.now() + UInt64(max(0, seconds) * 1e9)
    }

    /// Milliseconds left (rounded up), 0 when passed.
    var milliseconds: Int32 {
        let now = Deadline.now()
        guard now < end else { return 0 }
        return Int32(min(Double(Int32.max), (Double(end - now) / 1e6).rounded(.up)))
    }

    private static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// "3 s", "0.5 s".
func seconds(_ s: Double) -> String {
    s == s.rounded() ? "\(Int(s)) s" : "\(s) s"
}
#endif
