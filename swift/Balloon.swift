// The memory balloon as the C ABI offers it (vmz_set_memory_target): the
// Machine's side, over the engine's (QEMUBalloon.swift, VZEngine).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A balloon target must be whole MiB, from the engine's minimum up to the
/// VM's memory size (which gives everything back).
func checkMemoryTarget(_ bytes: UInt64, memorySize: UInt64) throws {
    if bytes % mib != 0 {
        throw BridgeError(VMZ_ERROR_MEMORY_SIZE, "memory target \(bytes) bytes is not a whole number of MiB")
    }
    let minimum = try PlatformEngine.limits().minMemory
    if bytes < minimum || bytes > memorySize {
        throw BridgeError(
            VMZ_ERROR_MEMORY_SIZE,
            "memory target \(bytes / mib) MiB is outside \(minimum / mib)...\(memorySize / mib) MiB (up to the VM's memory size)")
    }
}

extension Machine {
    func setMemoryTarget(_ bytes: UInt64) throws {
        try withEngine { engine, state in
            guard state == VMZ_STATE_RUNNING else {
                throw BridgeError(VMZ_ERROR_INVALID_STATE, "cannot set the memory target: the VM is \(stateName(state))")
            }
            try engine.setMemoryTarget(bytes)
        }
    }
}
