// The QEMU engine's console, named virtio-console ports and entropy
// device: their QEMU arguments.
//
// hvc0 is `virtconsole` on a `virtio-serial-pci` bus, ttyS0 the 8250 that
// `-serial` creates. Measured under TCG (../shared facts, BENCHMARKS.md):
// hvc0 15-18 MB/s, ttyS0 0.5-0.7 MB/s, a named port 500+ MB/s.

#if os(Linux)
import Glibc

extension QEMUEngine {
    /// The console (on the engine's stdio), the named ports (each on its
    /// socket, passed with `pass`) and the entropy device.
    func consoleArguments(pass: (Int32) -> Int32) -> [String] {
        var args: [String] = []
        // ABI 1 and 2 callers (no console field) keep the 8250.
        let device = config.console ?? .serial
        if device == .virtio || !portFDs.isEmpty {
            // Port 0 of the bus is reserved for a virtconsole: named ports
            // are 1, 2, ... (the guest's /dev/vport0p1, ...).
            args += ["-device", "virtio-serial-pci,id=vser0"]
        }
        args += ["-chardev", "stdio,id=serial0,signal=off"]
        switch device {
        case .serial: args += ["-serial", "chardev:serial0"]
        case .virtio: args += ["-device", "virtconsole,chardev=serial0,bus=vser0.0"]
        }
        for (i, port) in config.serialPorts.enumerated() {
            // Names are [A-Za-z0-9._-] (Console.swift): nothing to escape.
            args += [
                "-chardev", "socket,id=port\(i),fd=\(pass(portFDs[i]))",
                "-device", "virtserialport,chardev=port\(i),bus=vser0.0,name=\(port.name)",
            ]
        }
        if config.entropy {
            // Fed from the host's /dev/urandom (QEMU's builtin backend).
            args += ["-device", "virtio-rng-pci"]
        }
        return args
    }
}
#endif
