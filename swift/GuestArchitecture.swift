// The guest's CPU architecture (VMZConfig.guest_architecture), and which
// kernel formats each one boots.
//
// Virtualization.framework boots only the host's architecture; the QEMU
// engine boots x86_64 and arm64 guests on either host (QEMUMachineType.swift),
// by software emulation when the guest is foreign.

/// The architecture a guest runs.
enum GuestArchitecture: Equatable, CustomStringConvertible {
    case x86_64, arm64

    /// The host's architecture: the default.
    static var host: GuestArchitecture {
        #if arch(x86_64)
        return .x86_64
        #else
        return .arm64
        #endif
    }

    /// The config field; 0 (VMZ_GUEST_ARCH_HOST, also what older callers'
    /// structs read as) is the host's architecture.
    init(raw: UInt32) throws {
        switch raw {
        case VMZ_GUEST_ARCH_HOST.rawValue: self = .host
        case VMZ_GUEST_ARCH_X86_64.rawValue: self = .x86_64
        case VMZ_GUEST_ARCH_ARM64.rawValue: self = .arm64
        default:
            throw BridgeError(
                VMZ_ERROR_INVALID_ARGUMENT,
                "unknown guest architecture value \(raw) (VMZ_GUEST_ARCH_HOST, _X86_64 or _ARM64)")
        }
    }

    var description: String {
        switch self {
        case .x86_64: return "x86_64"
        case .arm64: return "arm64"
        }
    }

    /// Whether a kernel of `format` boots as it is on this architecture
    /// (a packed arm64 Image is unpacked first: `unpacks`).
    func boots(_ format: KernelFormat) -> Bool {
        switch (self, format) {
        case (.arm64, .arm64Image), (.x86_64, .bzImage), (.x86_64, .elf): return true
        default: return false
        }
    }

    /// Whether a kernel of `format` is a packed one of this architecture,
    /// which the kernel cache unpacks (KernelCache.swift): an arm64 Image
    /// gzip-compressed or inside an EFI zboot image.
    func unpacks(_ format: KernelFormat) -> Bool {
        self == .arm64 && (format == .gzip || format == .efiZboot)
    }

    /// The kernels this architecture boots, for error messages.
    var expectedKernels: String {
        switch self {
        case .arm64:
            return "an arm64 Linux Image (\"ARM\\x64\" at offset 0x38, e.g. arch/arm64/boot/Image), a gzip-compressed one (Image.gz, most distributions' vmlinuz) or an EFI zboot image (vmlinuz.efi)"
        case .x86_64:
            return "an x86_64 bzImage or an ELF vmlinux"
        }
    }
}
