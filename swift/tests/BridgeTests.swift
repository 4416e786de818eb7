// Unit tests of the bridge's Swift internals that need no VM: the QMP JSON
// reader, quoting, and the engine-independent config checks. Built and run
// by scripts/swift-tests.sh (swiftc, no package manager); never part of the
// library (build.rs compiles only swift/*.swift).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

var passed = 0
var failed = 0

func check(_ condition: @autoclosure () -> Bool, _ what: String, line: Int = #line) {
    if condition() {
        passed += 1
    } else {
        failed += 1
        print("FAILED (line \(line)): \(what)")
    }
}

func parse(_ s: String) -> JSON? { JSON.parse(Array(s.utf8)) }

func testJSON() {
    let greeting = parse(#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}"#)
    check(greeting?["QMP"]?["version"]?["qemu"]?["major"] == .number(7), "nested objects and numbers")
    let event = parse(#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#)
    check(event?["event"]?.string == "SHUTDOWN", "event name")
    check(event?["data"]?["guest"]?.bool == true, "booleans")
    check(event?["data"]?["reason"]?.string == "guest-shutdown", "strings")
    check(parse(#"{"return": {}}"#)?["return"] == .object([:]), "empty object")
    check(parse(#"[1, -2.5e3, null, false, "x"]"#) == .array([.number(1), .number(-2500), .null, .bool(false), .string("x")]), "arrays and literals")
    check(parse(#""a\"b\\c\n\tA\u00e9\u20ac""#) == .string("a\"b\\c\n\tA\u{e9}\u{20ac}"), "escapes")
    check(parse("  {\"a\" : 1 }  ") == .object(["a": .number(1)]), "white space")
    for bad in ["", "{", "}", "{\"a\"}", "{\"a\":}", "[1,]", "[1 2]", "\"open", "tru", "{\"a\":1}x", "{1:2}", "\"\\u12\""] {
        check(parse(bad) == nil, "rejects \(bad.debugDescription)")
    }
    let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
    check(parse(deep) == nil, "nesting depth is bounded")
    let ok = String(repeating: "[", count: 10) + String(repeating: "]", count: 10)
    check(parse(ok) != nil, "moderate nesting is fine")
}

func testQuoting() {
    for s in ["plain", "quote \" and \\ backslash", "new\nline\ttab\r", "\u{1}\u{1f}", "é€😀"] {
        check(parse(jsonQuote(s)) == .string(s), "jsonQuote round trip of \(s.debugDescription)")
    }
    check(quoted("a\"b\n") == "\"a\\\"b\\n\"", "quoted escapes quotes and newlines")
    check(quoted("\u{7}") == "\"\\x7\"", "quoted escapes control characters")
}

func testConfig() {
    let limits = Limits(minCPUs: 1, maxCPUs: 4, minMemory: 64 * mib, maxMemory: 1024 * mib, maxCommandLine: 16)
    let kernel = strdup("/proc/self/exe")!
    defer { free(kernel) }
    func config(_ edit: (inout VMZConfig) -> Void) -> VMZConfig {
        var c = VMZConfig()
        c.struct_size = UInt32(MemoryLayout<VMZConfig>.size)
        c.kernel_path = UnsafePointer(kernel)
        c.read_pipe_fd = VMZ_FD_DEFAULT
        c.write_pipe_fd = VMZ_FD_DEFAULT
        c.cpu_count = 1
        c.memory_size = 64 * mib
        edit(&c)
        return c
    }
    func code(_ c: VMZConfig) -> VMZErrorCode? {
        var c = c
        do {
            _ = try ParsedConfig(&c, limits: limits)
            return nil
        } catch let e as BridgeError {
            return e.code
        } catch {
            return VMZ_ERROR_INTERNAL
        }
    }
    check(code(config { _ in }) == nil, "a valid config")
    check(code(config { $0.struct_size = 8 }) == VMZ_ERROR_INVALID_ARGUMENT, "short struct")
    check(code(config { $0.cpu_count = 0 }) == VMZ_ERROR_CPU_COUNT, "0 CPUs")
    check(code(config { $0.cpu_count = 4 }) == nil, "max CPUs")
    check(code(config { $0.cpu_count = 5 }) == VMZ_ERROR_CPU_COUNT, "max+1 CPUs")
    check(code(config { $0.memory_size = 63 * mib }) == VMZ_ERROR_MEMORY_SIZE, "below min memory")
    check(code(config { $0.memory_size = 64 * mib + 1 }) == VMZ_ERROR_MEMORY_SIZE, "not whole MiB")
    check(code(config { $0.memory_size = 1024 * mib }) == nil, "max memory")
    check(code(config { $0.accelerator = 7 }) == VMZ_ERROR_ACCELERATOR, "unknown accelerator")
    check(code(config { $0.read_pipe_fd = -3 }) == VMZ_ERROR_SERIAL_FD, "negative descriptor")
    let long = strdup(String(repeating: "x", count: 17))!
    defer { free(long) }
    check(code(config { $0.command_line = UnsafePointer(long) }) == VMZ_ERROR_COMMAND_LINE, "command line limit")
    check(code(config { $0.kernel_path = nil }) == VMZ_ERROR_INVALID_ARGUMENT, "NULL kernel")
    let dir = strdup("/")!
    defer { free(dir) }
    check(code(config { $0.kernel_path = UnsafePointer(dir) }) == VMZ_ERROR_KERNEL, "a directory as kernel")
    check(code(config { $0.boot_options = 2 }) == VMZ_ERROR_INVALID_ARGUMENT, "unknown boot option bits")
    check(code(config { $0.struct_size = UInt32(VMZ_CONFIG_SIZE_V1); $0.boot_options = 2 }) == nil,
          "an ABI 1 struct: boot_options is beyond it and not read")
    var plain = config { _ in }
    var fast = config { $0.boot_options = UInt32(VMZ_BOOT_FAST_OPTIONS) }
    var roomy = limits
    roomy.maxCommandLine = 2047
    check((try? ParsedConfig(&plain, limits: roomy))?.effectiveCommandLine == "", "no options unasked")
    check((try? ParsedConfig(&fast, limits: roomy))?.effectiveCommandLine == "cryptomgr.notests no_timer_check",
          "fast options appended")
    let short = strdup("0123456789")!
    defer { free(short) }
    check(code(config { $0.command_line = UnsafePointer(short) }) == nil, "10 bytes fit in 16")
    check(code(config { $0.command_line = UnsafePointer(short); $0.boot_options = UInt32(VMZ_BOOT_FAST_OPTIONS) })
          == VMZ_ERROR_COMMAND_LINE, "the limit counts the appended options")
    check(Registry.errors.count == 0, "no error was handed to C")
}

@main
struct BridgeTests {
    static func main() {
        testJSON()
        testQuoting()
        testConfig()
        print("\(passed) passed, \(failed) failed")
        exit(failed == 0 ? 0 : 1)
    }
}
