// The QEMU engine's network devices: virtio-net-pci on user-mode NAT
// (slirp; host port forwards as hostfwd, on 127.0.0.1 unless the caller
// names another address), or on the caller's connected datagram socket
// (`-netdev dgram` with the socket passed as a descriptor, QEMU 7.2+: one
// Ethernet frame per datagram). A NIC without a chosen MAC gets a random
// locally administered one.

#if os(Linux)
extension QEMUEngine {
    func networkArguments(pass: (Int32) -> Int32) -> [String] {
        var args: [String] = []
        var sockets = networkFDs.makeIterator()
        for (i, net) in config.networks.enumerated() {
            var netdev: String
            switch net.kind {
            case .nat:
                netdev = "user,id=net\(i)"
                for f in net.forwards {
                    netdev += ",hostfwd=\(f.udp ? "udp" : "tcp"):\(f.hostAddress):\(f.hostPort)-:\(f.guestPort)"
                }
            case .socket:
                netdev = "dgram,id=net\(i),local.type=fd,local.str=\(pass(sockets.next()!))"
            }
            // Without a chosen MAC, a random one (as Virtualization.framework
            // does): QEMU's default numbers NICs the same way in every
            // process, so two VMs' NICs on one link would share a MAC.
            let device = "virtio-net-pci,netdev=net\(i),romfile=,mac=\(net.mac ?? Network.randomMAC())"
            args += ["-netdev", netdev, "-device", device]
        }
        return args
    }
}
#endif
