// Kernel image formats, recognised by their first bytes: what both engines
// check before a start (GuestArchitecture.boots says which one boots where).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a kernel file is, from its first bytes.
enum KernelFormat: Equatable, CustomStringConvertible {
    case arm64Image, gzip, efiZboot, bzImage, elf, unknown

    init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            throw BridgeError(VMZ_ERROR_KERNEL, "kernel \(quoted(path)) cannot be read: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var h = [UInt8](repeating: 0, count: 0x210)
        let n = h.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        func has(_ offset: Int, _ bytes: [UInt8]) -> Bool {
            n >= offset + bytes.count && Array(h[offset..<offset + bytes.count]) == bytes
        }
        if has(0, [0x1f, 0x8b]) {
            self = .gzip
        } else if has(0x38, Array("ARM".utf8) + [0x64]) {
            self = .arm64Image
        } else if has(0, Array("MZ".utf8)) && has(4, Array("zimg".utf8)) {
            self = .efiZboot
        } else if has(0, [0x7f, 0x45, 0x4c, 0x46]) {
            self = .elf
        } else if has(0x202, Array("HdrS".utf8)) {
            self = .bzImage
        } else {
            self = .unknown
        }
    }

    var description: String {
        switch self {
        case .arm64Image: return "an arm64 Image"
        case .gzip: return "gzip-compressed"
        case .efiZboot: return "an EFI zboot image (an arm64 vmlinuz.efi)"
        case .bzImage: return "an x86 bzImage"
        case .elf: return "an ELF file (vmlinux)"
        case .unknown: return "of an unknown format (not a Linux kernel image?)"
        }
    }
}

