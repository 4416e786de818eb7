// The Linux engine's virtio-blk disks: QEMU arguments for the disks of a
// config whose images the bridge opened (DiskConfig.swift: Disk.openLocked).
//
// Each image reaches QEMU as an inherited descriptor in an fd set
// (`-add-fd`, then `filename=/dev/fdset/N`): QEMU uses that very open file
// (its access mode, its flock), never a path; the validated file is the
// file the guest gets.
//
// Sync settings (VMZDiskSync), all on QEMU's default host page cache
// (cache.direct=off, which works on every file system, tmpfs included) and
// its thread pool for I/O (aio=threads):
//   full, fsync  a guest flush is an fdatasync of the image (Linux's fsync
//                family flushes the drive's cache too: no cheaper middle
//                ground exists here)
//   off          cache.no-flush=on: flushes are ignored

#if os(Linux)
enum QEMUDisks {
    /// QEMU's arguments for `disks`, whose descriptors are `childFDs`
    /// (descriptor numbers in the QEMU process), in the same order.
    static func arguments(_ disks: [Disk], childFDs: [Int32]) -> [String] {
        var args: [String] = []
        for (disk, fd) in zip(disks, childFDs) {
            let set = disk.index + 1
            let node = "vmz-disk\(disk.index)"
            let readOnly = disk.readOnly ? "true" : "false"
            let cache = "{\"direct\":false,\"no-flush\":\(disk.sync == .off ? "true" : "false")}"
            let discard = disk.readOnly ? "" : ",\"discard\":\"unmap\""
            args += ["-add-fd", "fd=\(fd),set=\(set),opaque=\(node)"]
            args += [
                "-blockdev",
                "{\"driver\":\"\(disk.isBlockDevice ? "host_device" : "file")\",\"node-name\":\"\(node)-file\","
                    + "\"filename\":\"/dev/fdset/\(set)\",\"read-only\":\(readOnly),\"aio\":\"threads\","
                    + "\"cache\":\(cache)\(discard)}",
            ]
            // qcow2: "backing": null, so that QEMU never opens a file named
            // in the image (DiskConfig refuses such images anyway).
            let format = disk.format == .qcow2 ? "\"driver\":\"qcow2\",\"backing\":null" : "\"driver\":\"raw\""
            args += [
                "-blockdev",
                "{\(format),\"node-name\":\"\(node)\",\"file\":\"\(node)-file\","
                    + "\"read-only\":\(readOnly),\"cache\":\(cache)\(discard)}",
            ]
            // The serial holds only A-Z a-z 0-9 . _ - (DiskConfig): no
            // escaping needed in QEMU's key=value syntax.
            var device = "virtio-blk-pci,drive=\(node),id=\(node)-device"
            if let serial = disk.serial { device += ",serial=\(serial)" }
            args += ["-device", device]
        }
        return args
    }
}
#endif
