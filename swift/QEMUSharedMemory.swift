// Guest memory that another process can map: what vhost-user devices need
// (the vsock daemon, QEMUVsock.swift; virtiofsd). One memfd backend, shared,
// the size of -m, as the guest's one NUMA node.

#if os(Linux)
extension QEMUEngine {
    /// Whether a device needs the guest's memory shared with its daemon.
    var needsSharedMemory: Bool {
        (vsock?.needsSharedMemory ?? false) || !config.shares.isEmpty
    }

    /// QEMU's arguments for shareable guest memory, or none.
    func sharedMemoryArguments() -> [String] {
        guard needsSharedMemory else { return [] }
        return [
            "-object", "memory-backend-memfd,id=mem,size=\(config.memorySize / mib)M,share=on",
            "-numa", "node,memdev=mem",
        ]
    }
}
#endif
