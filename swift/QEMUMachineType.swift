// What the QEMU engine runs for each guest architecture: the binary, the
// accelerator, machine, CPU, firmware and panic device, and the kernels it
// boots.
//
// x86_64: `q35` with qboot when installed (QEMUEngine.swift explains why).
// arm64: `virt` with the kernel loaded directly (no firmware: QEMU hands it
// a device tree). Measured under TCG on an x86_64 host (BENCHMARKS.md),
// QEMU CPU time to the guest's /init with Debian's cloud kernel: cortex-a57
// 1.1-1.3 s, cortex-a72 1.4 s, neoverse-n1 1.45 s, max with pauth off
// 1.65 s, max,pauth-impdef=on 1.9 s, max 6.7 s (pointer authentication
// emulated the architected way). cortex-a57 (ARMv8.0) runs every arm64
// distribution kernel. GICv3 under TCG (GICv2 stops at 8 vCPUs); with KVM
// the host's CPU and GIC. The power button is a GPIO line of the PL061
// (device tree gpio-keys), which `system_powerdown` presses; ACPI exists
// only with UEFI firmware, which costs seconds under TCG and is not used.

#if os(Linux)
import Glibc

struct QEMUMachineType {
    let architecture: GuestArchitecture
    let accelerator: Accelerator
    /// x86_64's firmware (qboot), nil for QEMU's default.
    let firmware: String?

    /// The QEMU binary for `architecture`, looked up on PATH.
    static func binaryName(_ architecture: GuestArchitecture) -> String {
        switch architecture {
        case .x86_64: return "qemu-system-x86_64"
        case .arm64: return "qemu-system-aarch64"
        }
    }

    /// The Debian package with that binary (for error messages).
    static func package(_ architecture: GuestArchitecture) -> String {
        switch architecture {
        case .x86_64: return "qemu-system-x86"
        case .arm64: return "qemu-system-arm"
        }
    }

    /// -accel, -machine, -cpu, firmware, and the panic device: a guest
    /// kernel panic (with the guest's pvpanic driver) ends QEMU with reason
    /// guest-panic instead of looking like a reboot.
    var arguments: [String] {
        let kvm = accelerator == .hardware
        var args = ["-accel", kvm ? "kvm" : "tcg"]
        switch architecture {
        case .x86_64:
            args += ["-machine", "q35"]
            if kvm { args += ["-cpu", "host"] }
            args += ["-device", "pvpanic"]
            if let firmware { args += ["-bios", firmware] }
        case .arm64:
            args += ["-machine", kvm ? "virt,gic-version=host" : "virt,gic-version=3"]
            args += ["-cpu", kvm ? "host" : "cortex-a57"]
            args += ["-device", "pvpanic-pci"]
        }
        args += ["-action", "panic=shutdown"]
        return args
    }

    /// Checks that `path` is a kernel QEMU boots for `architecture`
    /// (arm64: gzip-compressed or EFI zboot too; unpacked at start).
    static func checkKernel(_ path: String, _ architecture: GuestArchitecture) throws {
        let format = try KernelFormat(path: path)
        if architecture.boots(format) || architecture.unpacks(format) { return }
        var hint = ""
        for other in [GuestArchitecture.x86_64, .arm64] where other != architecture && other.boots(format) {
            hint = " (a kernel for \(other) guests: set the guest architecture to \(other))"
        }
        if format == .gzip {
            hint = " (a compressed vmlinux.gz? x86_64 boots the bzImage or the uncompressed vmlinux)"
        } else if format == .efiZboot {
            hint = " (a kernel for arm64 guests: set the guest architecture to arm64)"
        }
        throw BridgeError(
            VMZ_ERROR_KERNEL,
            "kernel \(quoted(path)) is \(format.description)\(hint); an \(architecture) guest boots \(architecture.expectedKernels)"
        )
    }

    /// The file QEMU boots for the kernel at `path` (already checked): an
    /// x86 bzImage's payload unpacked, when that works, or an arm64 Image
    /// out of its gzip or EFI zboot packing (QEMU 7.2 cannot load a zboot
    /// image), each once, into the kernel cache (KernelCache.swift).
    static func bootableKernel(_ path: String, _ architecture: GuestArchitecture) throws -> String {
        switch architecture {
        case .x86_64:
            // It then boots through the PVH entry instead of decompressing
            // itself under emulation.
            return KernelCache.uncompressed(for: path) ?? path
        case .arm64:
            let packing = try KernelFormat(path: path)
            guard architecture.unpacks(packing) else { return path }
            let image = try packing == .gzip ? KernelCache.gunzipped(path) : KernelCache.unzbooted(path)
            let format = try KernelFormat(path: image)
            guard format == .arm64Image else {
                throw BridgeError(
                    VMZ_ERROR_KERNEL,
                    "kernel \(quoted(path)) is \(packing.description), and unpacked it is \(format.description), not an arm64 Image"
                )
            }
            return image
        }
    }
}
#endif
