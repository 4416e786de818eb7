// The network devices of a config (VMZConfig.networks), parsed and checked
// for everything that does not depend on the engine.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A host port forwarded to the guest (NAT, Linux).
struct PortForward: Equatable {
    var udp: Bool
    var hostAddress: String
    var hostPort: UInt16
    var guestPort: UInt16
}

/// One virtio network device.
struct Network {
    enum Kind { case nat, socket }
    var kind: Kind
    /// Lower-case "xx:xx:xx:xx:xx:xx", or nil for the engine's choice.
    var mac: String?
    /// The caller's datagram socket (borrowed; .socket only).
    var fd: Int32
    var forwards: [PortForward]

    /// Most network devices per VM.
    static let maxCount = 8

    /// The networks of a config: the enable_nat one first, then the list.
    static func parse(_ c: VMZConfig) throws -> [Network] {
        var out: [Network] = []
        if c.enable_nat { out.append(Network(kind: .nat, mac: nil, fd: -1, forwards: [])) }
        let count = Int(c.network_count)
        guard out.count + count <= maxCount else {
            throw BridgeError(VMZ_ERROR_DEVICE, "\(out.count + count) network devices; at most \(maxCount) are supported")
        }
        let raws = try readABIArray(
            UnsafeRawPointer(c.networks), count: c.network_count, as: VMZNetwork.self,
            minimumSize: MemoryLayout<VMZNetwork>.size, what: "networks")
        for (i, raw) in raws.enumerated() {
            let what = "network \(i)"
            var net = Network(kind: .nat, mac: nil, fd: -1, forwards: [])
            switch raw.kind {
            case UInt32(VMZ_NETWORK_NAT.rawValue): net.kind = .nat
            case UInt32(VMZ_NETWORK_SOCKET.rawValue): net.kind = .socket
            default: throw BridgeError(VMZ_ERROR_DEVICE, "\(what): unknown kind \(raw.kind) (VMZ_NETWORK_NAT or VMZ_NETWORK_SOCKET)")
            }
            if let text = try cString(raw.mac_address, VMZ_ERROR_DEVICE, "\(what): the MAC address", required: false) {
                net.mac = try parseMAC(text, what: what)
                if out.contains(where: { $0.mac == net.mac }) {
                    throw BridgeError(VMZ_ERROR_DEVICE, "\(what): MAC address \(text) is used twice")
                }
            }
            if net.kind == .socket {
                try checkConnectedSocket(raw.fd, datagram: true, what: what)
                net.fd = raw.fd
                guard raw.port_forward_count == 0 else {
                    throw BridgeError(VMZ_ERROR_DEVICE, "\(what): port forwards are for NAT networks; a socket network has none")
                }
            } else {
                net.forwards = try parseForwards(raw, what: what, taken: out.flatMap(\.forwards))
            }
            out.append(net)
        }
        return out
    }

    /// "52:54:00:12:34:56" (any case): six hex octets, unicast.
    static func parseMAC(_ text: String, what: String) throws -> String {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let octets = parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
        guard parts.count == 6, octets.count == 6 else {
            throw BridgeError(VMZ_ERROR_DEVICE, "\(what): MAC address \(quoted(text)) is not six hex octets like 52:54:00:12:34:56")
        }
        guard octets[0] & 1 == 0 else {
            throw BridgeError(VMZ_ERROR_DEVICE, "\(what): MAC address \(text) is a multicast address (the first octet is odd)")
        }
        return macText(octets)
    }

    /// Six octets as "52:54:00:0a:0b:0c" (lower case).
    static func macText(_ octets: [UInt8]) -> String {
        octets.map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: ":")
    }

    /// A random locally administered unicast MAC address (the first
    /// octet's bit 1 set, bit 0 clear), what Virtualization.framework gives
    /// a device by default; the QEMU engine gives one to every NIC without
    /// a chosen MAC.
    static func randomMAC() -> String {
        var octets = (0..<6).map { _ in UInt8.random(in: 0...255) }
        octets[0] = (octets[0] & 0xfc) | 0x02
        return macText(octets)
    }

    private static func parseForwards(_ raw: VMZNetwork, what: String, taken: [PortForward]) throws -> [PortForward] {
        let raws = try readABIArray(
            UnsafeRawPointer(raw.port_forwards), count: raw.port_forward_count, as: VMZPortForward.self,
            minimumSize: MemoryLayout<VMZPortForward>.size, what: "\(what): port forwards")
        var out: [PortForward] = []
        for (i, f) in raws.enumerated() {
            let fw = "\(what), port forward \(i)"
            guard f.protocol == UInt32(VMZ_PROTOCOL_TCP.rawValue) || f.protocol == UInt32(VMZ_PROTOCOL_UDP.rawValue) else {
                throw BridgeError(VMZ_ERROR_DEVICE, "\(fw): unknown protocol \(f.protocol) (VMZ_PROTOCOL_TCP or VMZ_PROTOCOL_UDP)")
            }
            var address = "127.0.0.1"
            if let s = try cString(f.host_address, VMZ_ERROR_DEVICE, "\(fw): the host address", required: false) {
                var addr = in_addr()
                guard inet_pton(AF_INET, s, &addr) == 1 else {
                    throw BridgeError(VMZ_ERROR_DEVICE, "\(fw): host address \(quoted(s)) is not an IPv4 address like 127.0.0.1")
                }
                address = s
            }
            guard f.host_port != 0, f.guest_port != 0 else {
                throw BridgeError(VMZ_ERROR_DEVICE, "\(fw): ports must be 1 to 65535 (host \(f.host_port), guest \(f.guest_port))")
            }
            let forward = PortForward(
                udp: f.protocol == UInt32(VMZ_PROTOCOL_UDP.rawValue), hostAddress: address,
                hostPort: f.host_port, guestPort: f.guest_port)
            if (taken + out).contains(where: { $0.udp == forward.udp && $0.hostPort == forward.hostPort }) {
                throw BridgeError(VMZ_ERROR_DEVICE, "\(fw): host port \(forward.udp ? "udp" : "tcp") \(forward.hostPort) is forwarded twice")
            }
            out.append(forward)
        }
        return out
    }
}
