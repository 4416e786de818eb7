// Arrays of structs passed through the C ABI as (pointer, count) pairs
// (VMZConfig's disks, shares and their directories, networks and their port
// forwards, serial ports): every element starts with `uint32_t
// struct_size`, the size of the struct as the caller was compiled.

/// Copies `count` caller structs from `base` into `T`s. The caller's
/// elements may be smaller (an older ABI: the missing fields read as zero)
/// or larger (a newer ABI: the extra fields are ignored) than `T`; the
/// array is stepped through by the first element's `struct_size`, which
/// every element must repeat and which must cover at least `minimumSize`
/// bytes (the fields of the ABI that introduced `T`).
func readABIArray<T>(
    _ base: UnsafeRawPointer?, count: UInt32, as _: T.Type, minimumSize: Int, what: String
) throws -> [T] {
    if count == 0 { return [] }
    guard let base else {
        throw BridgeError(VMZ_ERROR_INVALID_ARGUMENT, "\(what) is NULL but its count is \(count)")
    }
    let stride = Int(base.loadUnaligned(as: UInt32.self))
    guard stride >= minimumSize else {
        throw BridgeError(
            VMZ_ERROR_INVALID_ARGUMENT, "\(what)[0]: struct_size is \(stride), expected at least \(minimumSize)")
    }
    let zeroed = UnsafeMutableRawPointer.allocate(
        byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
    defer { zeroed.deallocate() }
    var out: [T] = []
    out.reserveCapacity(Int(count))
    for i in 0..<Int(count) {
        let element = base + i * stride
        let size = Int(element.loadUnaligned(as: UInt32.self))
        guard size == stride else {
            throw BridgeError(
                VMZ_ERROR_INVALID_ARGUMENT,
                "\(what)[\(i)]: struct_size is \(size), but \(what)[0]'s is \(stride) (all elements must have the same)")
        }
        zeroed.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
        zeroed.copyMemory(from: element, byteCount: min(size, MemoryLayout<T>.size))
        out.append(zeroed.load(as: T.self))
    }
    return out
}
