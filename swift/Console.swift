// The console device and the extra named virtio-console ports of a config
// (VMZConfig.console, .serial_ports), parsed and checked for everything
// that does not depend on the engine.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The device the console descriptors attach to.
enum ConsoleDevice: UInt32 {
    /// virtio-console, the guest's hvc0.
    case virtio = 0
    /// The 8250 UART, the guest's ttyS0 (Linux only).
    case serial = 1

    /// The console field of a config whose `struct_size` is `size`; nil
    /// when the caller's struct predates it (ABI 1 and 2: the engine's old
    /// default, ttyS0 on Linux and hvc0 on macOS).
    static func parse(_ c: VMZConfig, size: Int) throws -> ConsoleDevice? {
        guard size >= MemoryLayout<VMZConfig>.offset(of: \VMZConfig.console)! + 4 else { return nil }
        guard let device = ConsoleDevice(rawValue: c.console) else {
            throw BridgeError(VMZ_ERROR_DEVICE, "unknown console device value \(c.console) (VMZ_CONSOLE_VIRTIO or VMZ_CONSOLE_SERIAL)")
        }
        return device
    }
}

/// A named virtio-console port: its name and the caller's connected stream
/// socket (borrowed; the engine duplicates it).
struct SerialPort {
    var name: String
    var fd: Int32

    /// Longest port name accepted, in bytes.
    static let maxNameLength = 64
    /// Most ports per VM: QEMU's virtio-serial device has 31 ports, one of
    /// which is the console.
    static let maxCount = 30

    /// The ports of a config (already copied to the ABI's full size).
    static func parse(_ c: VMZConfig) throws -> [SerialPort] {
        let count = Int(c.serial_port_count)
        guard count <= maxCount else {
            throw BridgeError(VMZ_ERROR_DEVICE, "\(count) serial ports; at most \(maxCount) are supported")
        }
        let raws = try readABIArray(
            UnsafeRawPointer(c.serial_ports), count: c.serial_port_count, as: VMZSerialPort.self,
            minimumSize: MemoryLayout<VMZSerialPort>.offset(of: \VMZSerialPort.fd)! + 4, what: "serial ports")
        var ports: [SerialPort] = []
        for (i, raw) in raws.enumerated() {
            // NULL and UTF-8 checked here, emptiness by checkName (its
            // message gives the bounds)
            guard let name = try cString(raw.name, VMZ_ERROR_DEVICE, "serial port \(i): name", required: false)
            else { throw BridgeError(VMZ_ERROR_DEVICE, "serial port \(i): name is NULL") }
            try checkName(name, index: i)
            if ports.contains(where: { $0.name == name }) {
                throw BridgeError(VMZ_ERROR_DEVICE, "serial port \(i): the name \(quoted(name)) is used twice")
            }
            try checkConnectedSocket(raw.fd, datagram: false, what: "serial port \(quoted(name))")
            ports.append(SerialPort(name: name, fd: raw.fd))
        }
        return ports
    }

    private static func checkName(_ name: String, index: Int) throws {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= maxNameLength else {
            throw BridgeError(
                VMZ_ERROR_DEVICE,
                "serial port \(index): the name must be 1 to \(maxNameLength) bytes, it is \(bytes.count)")
        }
        for b in bytes {
            let ok = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
                || b == 0x2e || b == 0x5f || b == 0x2d
            if !ok {
                throw BridgeError(
                    VMZ_ERROR_DEVICE,
                    "serial port \(index): the name \(quoted(name)) may hold only A-Z a-z 0-9 . _ -")
            }
        }
    }
}
