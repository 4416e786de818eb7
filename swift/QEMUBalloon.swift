// The QEMU engine's memory balloon: virtio-balloon with free page
// reporting (QEMU 7.2 and Linux 5.7+): the guest reports the pages it
// freed and QEMU gives them back to the host (MADV_DONTNEED, or a hole
// punched in a shared memfd), so the host's memory use follows the
// guest's without anyone setting a target. A target (QMP `balloon`)
// makes the guest hand pages over until it has that much.

#if os(Linux)
extension QEMUEngine {
    func balloonArguments() -> [String] {
        guard config.balloon else { return [] }
        return ["-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on"]
    }

    func setMemoryTarget(_ bytes: UInt64) throws {
        guard config.balloon else {
            throw BridgeError(VMZ_ERROR_DEVICE, "the VM has no memory balloon (it was omitted in its config)")
        }
        try checkMemoryTarget(bytes, memorySize: config.memorySize)
        try executeWhileRunning("balloon", arguments: "{\"value\": \(bytes)}")
    }
}
#endif
