/*
 * libvmz.h: the C ABI of the vmz bridge.
 *
 * The bridge boots a Linux guest (kernel + initrd + command line) with
 * Apple's Virtualization.framework on macOS, or with QEMU (a child process
 * driven over QMP) on Linux. Everything is opaque: callers see handles,
 * error references and callbacks, never the bridge's objects.
 *
 * Ownership rules, in one place (each declaration repeats what applies):
 *  - Strings passed in (config paths, command line) are borrowed for the
 *    duration of the call only. They must be NUL-terminated valid UTF-8.
 *  - File descriptors passed in are borrowed for the duration of the call:
 *    the bridge makes its own copies (Linux: pipes and terminals reopened,
 *    so that QEMU's O_NONBLOCK does not reach the caller's open file
 *    description; other kinds duplicated). The caller may close its own
 *    descriptors as soon as the call returns.
 *  - A VMZHandle is owned by the bridge and opaque: never dereference it.
 *    The caller releases it exactly once with vmz_release(); after that it
 *    must not be used again (the bridge detects most such uses and answers
 *    VMZ_ERROR_INVALID_ARGUMENT, but do not rely on it).
 *  - Every VMZErrorRef the bridge hands out (through an out-parameter or a
 *    callback argument) is owned by the receiver, who frees it exactly once
 *    with vmz_error_free(). The message string belongs to the error and lives
 *    until the error is freed.
 *  - Callbacks run on a bridge-owned serial queue (one per VM), never on the
 *    caller's thread, and never concurrently for the same VM. Each fires at
 *    most once per event; after vmz_release() returns, no callback for that
 *    handle runs again and release_context (if set) has been called
 *    (except when vmz_release() is called from inside one of that VM's
 *    callbacks: see vmz_release()).
 *  - Functions may be called from any thread, including from inside a
 *    callback.
 *
 * Versioning: VMZ_ABI_VERSION grows when the ABI grows. Structs passed in
 * start with a `struct_size` field set to sizeof(struct) as the caller was
 * compiled; the bridge reads only the fields that size covers and treats
 * the rest as zero, so old callers keep working against a newer bridge.
 */
#ifndef LIBVMZ_H
#define LIBVMZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The ABI version this header describes. Compare with vmz_abi_version(). */
#define VMZ_ABI_VERSION 3

/** A VM owned by the bridge. Opaque; released with vmz_release(). */
typedef struct VMZMachine *VMZHandle;

/** An error owned by whoever received it; freed with vmz_error_free(). */
typedef struct VMZError *VMZErrorRef;

/** Error codes carried by a VMZErrorRef (vmz_error_code()). Stable values. */
typedef enum VMZErrorCode {
    /** A NULL pointer, a non-UTF-8 string, a bad struct_size or handle. */
    VMZ_ERROR_INVALID_ARGUMENT = 1,
    /** The kernel is missing, not a regular file, unreadable or of an
     *  unsupported format. */
    VMZ_ERROR_KERNEL = 2,
    /** The initial ramdisk is missing, not a regular file or unreadable. */
    VMZ_ERROR_INITRD = 3,
    /** The kernel command line is too long. */
    VMZ_ERROR_COMMAND_LINE = 4,
    /** The CPU count is outside the engine's limits (vmz_get_limits()). */
    VMZ_ERROR_CPU_COUNT = 5,
    /** The memory size is outside the limits or not a whole MiB. */
    VMZ_ERROR_MEMORY_SIZE = 6,
    /** A serial descriptor is not open, or open in the wrong direction. */
    VMZ_ERROR_SERIAL_FD = 7,
    /** The requested accelerator is unknown or not usable here. */
    VMZ_ERROR_ACCELERATOR = 8,
    /** The operation is not allowed in the VM's current state (start twice,
     *  stop before start, ...). */
    VMZ_ERROR_INVALID_STATE = 9,
    /** The engine cannot run here (no QEMU binary, no Virtualization
     *  support, missing entitlement). */
    VMZ_ERROR_ENGINE_UNAVAILABLE = 10,
    /** The engine failed to start the VM (the message says why, with the
     *  engine's own output where there is any). */
    VMZ_ERROR_START_FAILED = 11,
    /** The VM stopped because of an error at run time (engine crashed or was
     *  killed, guest panicked where detectable, ...). */
    VMZ_ERROR_RUNTIME = 12,
    /** An operating system call failed (the message names it and errno). */
    VMZ_ERROR_IO = 13,
    /** A bug in the bridge. */
    VMZ_ERROR_INTERNAL = 14,
    /** ABI 3: a device in the config is invalid (a serial port's name or
     *  descriptor, a network, vsock settings); the message names it. */
    VMZ_ERROR_DEVICE = 15,
    /** ABI 3: the engine did not answer within its bound (QEMU stopped or
     *  frozen; the start did not complete within start_timeout_ms). */
    VMZ_ERROR_TIMEOUT = 16,
    /** ABI 3: a disk (VMZConfig.disks) is missing, a directory, unreadable,
     *  not writable although asked read-write, empty, of a format vmz or the
     *  engine does not take, given twice, or has an invalid setting; or
     *  there are more than VMZ_MAX_DISKS. The message names the disk. */
    VMZ_ERROR_DISK = 17,
    /** ABI 3: a disk is in use by another running VM: held read-write
     *  there, or asked read-write here while another VM has it open. */
    VMZ_ERROR_DISK_IN_USE = 18,
    /** ABI 3: nobody listens on the guest's vsock port (or the guest did
     *  not answer the connection in time). */
    VMZ_ERROR_CONNECTION_REFUSED = 19,
    /** ABI 3: the host already listens on this vsock port of the VM. */
    VMZ_ERROR_PORT_IN_USE = 20,
    /** ABI 3: a shared directory (VMZConfig.shares) is missing, not a
     *  directory or unreadable, its tag is invalid, too long or used twice,
     *  or there are more than VMZ_MAX_SHARES. The message names the share.
     *  (A missing virtiofsd on Linux is VMZ_ERROR_ENGINE_UNAVAILABLE.) */
    VMZ_ERROR_SHARE = 21,
} VMZErrorCode;

/** How the guest's CPUs are run. */
typedef enum VMZAccelerator {
    /** KVM (Linux) where it really runs, otherwise software emulation.
     *  On Linux the environment variable VMZ_ACCEL (kvm, tcg or auto)
     *  overrides this choice, and only this one. */
    VMZ_ACCEL_AUTO = 0,
    /** Hardware virtualization: KVM on Linux, Hypervisor.framework on macOS. */
    VMZ_ACCEL_HARDWARE = 1,
    /** Software emulation (QEMU TCG). Linux only. */
    VMZ_ACCEL_SOFTWARE = 2,
} VMZAccelerator;

/** The life cycle of a VM. A handle runs at most one VM life: CREATED, then
 *  STARTING, then RUNNING (from which PAUSING, PAUSED, RESUMING lead back
 *  to RUNNING), and finally STOPPED or ERROR, both final; a force stop
 *  passes through STOPPING. STOPPED: the guest powered off or rebooted, or
 *  the caller stopped it; ERROR: the start failed, the guest panicked, or
 *  the engine failed or was killed. The README draws the diagram. The
 *  state_did_change callback (ABI 3) reports every transition once, in
 *  order. */
typedef enum VMZState {
    VMZ_STATE_CREATED = 0,
    VMZ_STATE_STARTING = 1,
    VMZ_STATE_RUNNING = 2,
    VMZ_STATE_STOPPING = 3,
    VMZ_STATE_STOPPED = 4,
    VMZ_STATE_ERROR = 5,
    /** ABI 3: vmz_pause() was called; the vCPUs are being stopped. */
    VMZ_STATE_PAUSING = 6,
    /** ABI 3: the vCPUs are stopped; the VM keeps its memory and devices. */
    VMZ_STATE_PAUSED = 7,
    /** ABI 3: vmz_resume() was called; the vCPUs are being restarted. */
    VMZ_STATE_RESUMING = 8,
} VMZState;

/** VMZConfig.guest_architecture (ABI 3): the guest's CPU architecture.
 *  Virtualization.framework boots only the host's (another one is refused
 *  with VMZ_ERROR_ENGINE_UNAVAILABLE); the QEMU engine boots both, with
 *  qemu-system-x86_64 or qemu-system-aarch64, by software emulation (TCG)
 *  when the guest's architecture is not the host's. */
typedef enum VMZGuestArchitecture {
    /** The host's architecture (the default). */
    VMZ_GUEST_ARCH_HOST = 0,
    /** x86_64: a bzImage or an ELF vmlinux (PVH), console hvc0 or ttyS0. */
    VMZ_GUEST_ARCH_X86_64 = 1,
    /** arm64 (aarch64): an Image, or a gzip-compressed one (decompressed on
     *  the host into the kernel cache); QEMU's `virt` machine, console hvc0
     *  or, with VMZ_CONSOLE_SERIAL, the PL011 UART `ttyAMA0`. */
    VMZ_GUEST_ARCH_ARM64 = 2,
} VMZGuestArchitecture;

/** ABI 3: why a VM life ended (the did_end callback). Stable values.
 *  What each engine can tell apart: QEMU (Linux) reports every reason;
 *  Virtualization.framework (macOS) reports POWERED_OFF for any stop of the
 *  guest's own (it does not say whether the guest powered off or rebooted,
 *  and it has no panic device), ENGINE_ERROR for a VM that stopped with an
 *  error, and never KILLED_BY_SIGNAL (the VM runs in a framework-owned XPC
 *  service). */
typedef enum VMZEndReason {
    /** The guest powered off (also: it honoured vmz_request_stop()). */
    VMZ_END_POWERED_OFF = 1,
    /** The guest rebooted or reset itself (a reboot ends the VM: QEMU runs
     *  with -no-reboot). A guest kernel that panics without a panic device
     *  driver (pvpanic) and reboots on panic (panic=N) ends this way too. */
    VMZ_END_REBOOTED = 2,
    /** The guest kernel panicked (seen through the pvpanic device; the
     *  guest needs its pvpanic driver). */
    VMZ_END_PANICKED = 3,
    /** The engine process was killed by a host signal (`signal` says
     *  which), not by vmz. */
    VMZ_END_KILLED_BY_SIGNAL = 4,
    /** The engine failed at run time (crashed, exited on its own, lost
     *  its control connection); `error` says how. */
    VMZ_END_ENGINE_ERROR = 5,
    /** The caller stopped it: vmz_force_stop(), vmz_stop()'s grace period
     *  ran out, or vmz_release() of a running VM. */
    VMZ_END_FORCED = 6,
    /** The VM never ran: the start failed; `error` says why. */
    VMZ_END_START_FAILED = 7,
} VMZEndReason;

/** VMZConfig.boot_options (ABI 2): append kernel options that shorten a
 *  boot, mostly under emulation, to the command line: `cryptomgr.notests`
 *  (skip the crypto self-tests) and `no_timer_check` (skip the timer IRQ
 *  check). Off by default: vmz never changes the command line unasked. */
#define VMZ_BOOT_FAST_OPTIONS 0x1u

/** VMZConfig.console (ABI 3): the device the console descriptors
 *  (read_pipe_fd, write_pipe_fd) attach to. */
typedef enum VMZConsoleDevice {
    /** virtio-console: the guest's `hvc0` on both engines (`console=hvc0`).
     *  Fast (15-18 MB/s under QEMU TCG); needs the guest's virtio_console
     *  driver, and nothing appears before it loads. */
    VMZ_CONSOLE_VIRTIO = 0,
    /** The 8250 UART, the guest's `ttyS0` (`console=ttyS0`), Linux only:
     *  slow (about 0.5 MB/s under TCG) but it prints from the first kernel
     *  message on, before any module loads. */
    VMZ_CONSOLE_SERIAL = 1,
} VMZConsoleDevice;

/** VMZConfig.omit_devices (ABI 3): leave out the virtio entropy device
 *  (the guest's /dev/hwrng), which every VM has by default. */
#define VMZ_OMIT_ENTROPY 0x1u
/** VMZConfig.omit_devices (ABI 3): leave out the memory balloon (virtio
 *  balloon, with free page reporting on Linux), which every VM has by
 *  default; vmz_set_memory_target then fails with VMZ_ERROR_DEVICE. */
#define VMZ_OMIT_BALLOON 0x2u

/**
 * A named virtio-console port (ABI 3): a byte channel to the guest that is
 * not its console. The guest sees /dev/vportNpM (N: the virtio-serial
 * device, M >= 1 in the order given) whose name is in
 * /sys/class/virtio-ports/vportNpM/name, and /dev/virtio-ports/NAME where
 * udev or mdev makes links. Under QEMU TCG a port carries 500+ MB/s (no tty
 * layer), against 15-18 MB/s for hvc0.
 */
typedef struct VMZSerialPort {
    /** sizeof(VMZSerialPort) as the caller knows it. Required. */
    uint32_t struct_size;
    /** The port's name: 1 to 64 bytes of A-Z a-z 0-9 . _ -, unique in the
     *  VM. Borrowed for the call. */
    const char *name;
    /** A connected stream socket (one end of socketpair(AF_UNIX,
     *  SOCK_STREAM)): bytes written to its peer reach the guest's port, and
     *  the guest's writes arrive at the peer. Duplicated by vmz_create().
     *  The engine makes its copy non-blocking; the socket is shared, so use
     *  the peer end on the host. */
    int32_t fd;
} VMZSerialPort;
/** VMZDisk.format (ABI 3): how the image file is laid out. vmz never
 *  guesses: a raw image whose first bytes look like another format is
 *  refused instead of being opened as that format. */
typedef enum VMZDiskFormat {
    /** A plain image, byte for byte the guest's disk. Both engines. */
    VMZ_DISK_FORMAT_RAW = 0,
    /** QEMU's qcow2 (Linux only; Virtualization.framework takes raw
     *  images only). Backing files and external data files are refused:
     *  vmz opens no file the caller did not name. */
    VMZ_DISK_FORMAT_QCOW2 = 1,
} VMZDiskFormat;

/** VMZDisk.sync (ABI 3): what a flush from the guest (fsync in the guest,
 *  a journal commit) does on the host. */
typedef enum VMZDiskSync {
    /** Durable (the default): every flush reaches stable storage before the
     *  guest hears it is done. Linux: the flush becomes fdatasync, which
     *  also flushes the drive's write cache. macOS: F_FULLFSYNC
     *  (VZDiskImageSynchronizationMode.full). */
    VMZ_DISK_SYNC_FULL = 0,
    /** Flushes become the host's plain fsync, without a drive cache flush
     *  (a barrier): flushed data survives a crash of the guest, of the
     *  host process or of the host's OS, not necessarily a power loss.
     *  macOS: fsync
     *  (VZDiskImageSynchronizationMode.fsync), cheaper than FULL there.
     *  Linux has no such middle ground (its fsync always flushes the
     *  drive): the same as FULL. */
    VMZ_DISK_SYNC_FSYNC = 1,
    /** Flushes are ignored; data reaches the image when the host's page
     *  cache writes it back. For throwaway disks (scratch space, CI
     *  caches): a host crash can lose or tear anything written. Linux:
     *  QEMU cache.no-flush=on; macOS: VZDiskImageSynchronizationMode.none
     *  with host caching. */
    VMZ_DISK_SYNC_OFF = 2,
} VMZDiskSync;

/** The most disks one VM may have (VMZConfig.disk_count). */
#define VMZ_MAX_DISKS 16
/** The longest VMZDisk.serial, in bytes (virtio-blk's serial field). */
#define VMZ_DISK_SERIAL_MAX 20

/**
 * A virtio-blk disk (ABI 3). The guest sees the disks in the order given:
 * /dev/vda, /dev/vdb, ... The image is opened by the bridge, never by path
 * on QEMU's command line; while the VM runs, its open image is locked
 * (flock: exclusive when read-write, shared when read-only), so that a
 * second VM asking for it read-write, or asking for a disk another VM holds
 * read-write, gets VMZ_ERROR_DISK_IN_USE.
 */
typedef struct VMZDisk {
    /** sizeof(VMZDisk) as the caller knows it. Required; every element of
     *  the array has the same one, and the bridge steps by it. */
    uint32_t struct_size;
    /** A raw or qcow2 image file, or a block device (Linux; macOS 14+).
     *  Required. Borrowed for the call. */
    const char *path;
    /** A VMZDiskFormat. */
    uint32_t format;
    /** A VMZDiskSync. */
    uint32_t sync;
    /** The guest cannot write to the disk (it sees a read-only device). */
    bool read_only;
    /** The disk's serial number, or NULL for none: 1 to
     *  VMZ_DISK_SERIAL_MAX bytes of A-Z a-z 0-9 . _ -. The guest reads it
     *  from /sys/block/vdX/serial, and udev makes
     *  /dev/disk/by-id/virtio-SERIAL. macOS: the block device identifier
     *  (macOS 12.3+; ignored, with a warning, before). */
    const char *serial;
} VMZDisk;

/** VMZNetwork.kind (ABI 3). */
typedef enum VMZNetworkKind {
    /** NAT to the host's network (QEMU user-mode networking; macOS NAT),
     *  with optional host port forwards (Linux only). */
    VMZ_NETWORK_NAT = 0,
    /** "Bring your own network": Ethernet frames, one per datagram, over a
     *  connected datagram socket the caller passes (one end of
     *  socketpair(AF_UNIX, SOCK_DGRAM)); a user-space network stack or
     *  another VM is at the other end. */
    VMZ_NETWORK_SOCKET = 1,
} VMZNetworkKind;

/** VMZPortForward.protocol (ABI 3). */
typedef enum VMZProtocol {
    VMZ_PROTOCOL_TCP = 0,
    VMZ_PROTOCOL_UDP = 1,
} VMZProtocol;

/** A host port forwarded to the guest on a NAT network (ABI 3, Linux). */
typedef struct VMZPortForward {
    /** sizeof(VMZPortForward) as the caller knows it. Required. */
    uint32_t struct_size;
    /** A VMZProtocol. */
    uint32_t protocol;
    /** The host's IPv4 address to listen on, or NULL for 127.0.0.1 (only
     *  this machine can connect; "0.0.0.0" opens it to the network). */
    const char *host_address;
    /** The host's port (1-65535). */
    uint16_t host_port;
    /** The guest's port (1-65535), on its address on the NAT network. */
    uint16_t guest_port;
} VMZPortForward;

/** A virtio network device (ABI 3). */
typedef struct VMZNetwork {
    /** sizeof(VMZNetwork) as the caller knows it. Required. */
    uint32_t struct_size;
    /** A VMZNetworkKind. */
    uint32_t kind;
    /** The device's MAC address, "xx:xx:xx:xx:xx:xx" (unicast), or NULL
     *  for a random locally administered one. Borrowed for the call. */
    const char *mac_address;
    /** VMZ_NETWORK_SOCKET: the connected datagram socket; duplicated by
     *  vmz_create(). Ignored for NAT. */
    int32_t fd;
    /** VMZ_NETWORK_NAT: `port_forward_count` forwards (NULL when 0). */
    const VMZPortForward *port_forwards;
    uint32_t port_forward_count;
} VMZNetwork;

/** VMZConfig.vsock_cid: a vsock device whose context id the engine picks. */
#define VMZ_VSOCK_CID_AUTO 0xffffffffu

/** The most shared directories one VM may have (VMZConfig.share_count). */
#define VMZ_MAX_SHARES 8
/** The longest VMZShare.tag, in bytes: Virtualization.framework takes
 *  fewer than 36 (virtio-fs's own field holds 36), and one rule serves
 *  both engines. */
#define VMZ_SHARE_TAG_MAX 35

/** The most directories one multi-directory share may hold
 *  (VMZShare.directory_count). */
#define VMZ_MAX_SHARE_DIRECTORIES 16
/** The longest VMZShareDirectory.name, in bytes. */
#define VMZ_SHARE_DIRECTORY_NAME_MAX 64

/**
 * One directory of a multi-directory share (VMZShare.directories, ABI 3):
 * the guest sees it as /mnt/TAG/NAME when it mounts the share's tag at
 * /mnt/TAG.
 */
typedef struct VMZShareDirectory {
    /** sizeof(VMZShareDirectory) as the caller knows it. Required; every
     *  element of the array has the same one. */
    uint32_t struct_size;
    /** The name in the guest: 1 to VMZ_SHARE_DIRECTORY_NAME_MAX bytes of
     *  A-Z a-z 0-9 . _ -, not "." or "..", unique in the share. Required.
     *  Borrowed for the call. */
    const char *name;
    /** The host directory. Required. Borrowed for the call. */
    const char *path;
    /** The guest cannot change anything in this directory. */
    bool read_only;
} VMZShareDirectory;

/**
 * A host directory, or several under one tag, shared with the guest over
 * virtio-fs (ABI 3); the guest mounts it with `mount -t virtiofs TAG /mnt`.
 * Linux: one virtiofsd per share, started and stopped with the VM (found
 * as VMZ_VIRTIOFSD, else `virtiofsd` on PATH, else /usr/libexec/virtiofsd;
 * the Rust virtiofsd, `cargo install virtiofsd`). macOS:
 * VZVirtioFileSystemDeviceConfiguration with a VZSingleDirectoryShare, or a
 * VZMultipleDirectoryShare for several directories.
 */
typedef struct VMZShare {
    /** sizeof(VMZShare) as the caller knows it. Required; every element of
     *  the array has the same one, and the bridge steps by it. */
    uint32_t struct_size;
    /** The host directory. Required unless `directories` is given.
     *  Borrowed for the call. */
    const char *path;
    /** The tag the guest mounts: 1 to VMZ_SHARE_TAG_MAX bytes of A-Z a-z
     *  0-9 . _ -, unique in the VM. Required. Borrowed for the call. */
    const char *tag;
    /** The guest cannot change anything in the directory (in any of the
     *  directories, for a multi-directory share). */
    bool read_only;
    /** Several directories under one tag instead of `path` (which must
     *  then be NULL): `directory_count` VMZShareDirectory, NULL when none.
     *  The guest sees each as a subdirectory of the share's root, which is
     *  read-only. Linux: virtiofsd serves a directory holding bind mounts
     *  of them, made in the daemon's own mount namespace before it starts
     *  (as root; otherwise in an unprivileged user namespace, which the
     *  system must allow: refused by validation otherwise). Mounts below
     *  these directories are not seen. macOS: a VZMultipleDirectoryShare.
     *  Borrowed for the call. */
    const VMZShareDirectory *directories;
    uint32_t directory_count;
} VMZShare;

/** Serial descriptor value: "use the default" (no input; output to the
 *  process's standard output). */
#define VMZ_FD_DEFAULT (-1)

/**
 * Describes a VM. Borrowed by every call that takes it, for the duration of
 * the call only.
 */
typedef struct VMZConfig {
    /** sizeof(VMZConfig) as the caller knows it. Required. */
    uint32_t struct_size;
    /** Path of the kernel (x86_64: bzImage or an uncompressed vmlinux with a
     *  PVH note; arm64: an Image, uncompressed or gzip-compressed). Required. */
    const char *kernel_path;
    /** Path of the initial ramdisk, or NULL for none. */
    const char *initrd_path;
    /** Kernel command line, or NULL for an empty one. */
    const char *command_line;
    /** The guest's serial input: a readable descriptor (typically the read
     *  end of a pipe) whose bytes reach the guest's console, or
     *  VMZ_FD_DEFAULT for no input. Duplicated by vmz_create(). */
    int32_t read_pipe_fd;
    /** The guest's serial output: a writable descriptor, or VMZ_FD_DEFAULT
     *  for the process's standard output. Duplicated by vmz_create(). */
    int32_t write_pipe_fd;
    /** Number of virtual CPUs, within vmz_get_limits(). */
    uint32_t cpu_count;
    /** Guest memory in bytes: a whole number of MiB within vmz_get_limits(). */
    uint64_t memory_size;
    /** Give the guest one virtio NIC on a NAT (user-mode) network, with no
     *  host port forwards. */
    bool enable_nat;
    /** A VMZAccelerator value. */
    uint32_t accelerator;
    /** ABI 2: VMZ_BOOT_* flags. Callers built against ABI 1 pass a smaller
     *  struct_size (VMZ_CONFIG_SIZE_V1) and get 0. */
    uint32_t boot_options;
    /* ABI 3 fields start at offset 72, after ABI 2's tail padding (bytes
     * 68-71), which ABI 2 callers may leave uninitialized: so the first of
     * them is a pointer, 8-byte aligned. */
    /** ABI 3: extra named virtio-console ports, `serial_port_count` of them
     *  (NULL when 0). Borrowed for the call; descriptors are duplicated. */
    const VMZSerialPort *serial_ports;
    uint32_t serial_port_count;
    /** ABI 3: a VMZConsoleDevice. Callers built against ABI 1 or 2 (a
     *  struct_size that does not cover this field) keep what those ABIs
     *  gave: the 8250 (ttyS0) on Linux, virtio-console (hvc0) on macOS. */
    uint32_t console;
    /** ABI 3: VMZ_OMIT_* flags: default devices to leave out. */
    uint32_t omit_devices;
    /** ABI 3: a VMZGuestArchitecture; 0 (older callers too): the host's. */
    uint32_t guest_architecture;
    /** ABI 3: how long vmz_start may take, in milliseconds, until the VM
     *  runs (QEMU spawned and its QMP handshake done); past it the engine
     *  is killed and the start fails with VMZ_ERROR_TIMEOUT saying what it
     *  waited for. 0: the default, 30 s. */
    uint64_t start_timeout_ms;
    /** ABI 3: the VM's disks, `disk_count` VMZDisk structs (NULL when 0),
     *  in the order the guest sees them. Borrowed for the call. */
    const VMZDisk *disks;
    uint32_t disk_count;
    /** ABI 3: the guest's vsock context id: 0 for no vsock device,
     *  VMZ_VSOCK_CID_AUTO for one the engine picks (each VM its own), or
     *  3 to 0xfffffffe (Linux only; macOS picks the id itself). On Linux the
     *  device is vhost-vsock where /dev/vhost-vsock is usable, else the
     *  user-space vhost-device-vsock daemon (its own process per VM,
     *  which never outlives the calling process). */
    uint32_t vsock_cid;

    /** ABI 3: directories shared with the guest, `share_count` VMZShare
     *  structs (NULL when 0). Borrowed for the call. */
    const VMZShare *shares;
    uint32_t share_count;
    /** ABI 3: network devices, `network_count` VMZNetwork structs (NULL
     *  when 0), after the enable_nat one if that is set, in the order the
     *  guest sees them (eth0, eth1, ...). Borrowed for the call;
     *  descriptors are duplicated. */
    const VMZNetwork *networks;
    uint32_t network_count;
} VMZConfig;

/** sizeof(VMZConfig) in ABI 1, the smallest struct_size accepted. */
#define VMZ_CONFIG_SIZE_V1 64
/** sizeof(VMZConfig) in ABI 2 (LP64). */
#define VMZ_CONFIG_SIZE_V2 72

/** The engine's limits on this host. */
typedef struct VMZLimits {
    /** sizeof(VMZLimits) as the caller knows it. Required. */
    uint32_t struct_size;
    uint32_t min_cpu_count;
    uint32_t max_cpu_count;
    uint64_t min_memory_size;
    uint64_t max_memory_size;
    /** Longest kernel command line accepted, in bytes (without the NUL). */
    uint64_t max_command_line_length;
} VMZLimits;

/**
 * Completion of vmz_start() or vmz_force_stop(). `error` is NULL on success;
 * otherwise the receiver owns it and frees it with vmz_error_free().
 * Called exactly once for each call that returned true.
 */
typedef void (*VMZCompletionCallback)(void *context, VMZErrorRef error);

/**
 * VM-level callbacks, registered with vmz_create(). Every pointer may be
 * NULL. Of guest_did_stop and did_stop_with_error (ABI 1) at most one fires,
 * at most once: they report that the VM ended on its own (the guest powered
 * off or rebooted, or an error); a stop the caller forced is reported by
 * that call's completion, not there. did_end (ABI 3) reports every end,
 * forced ones included, with its reason.
 */
typedef struct VMZCallbacks {
    /** sizeof(VMZCallbacks) as the caller knows it. Required. */
    uint32_t struct_size;
    /** Passed back to every callback below. */
    void *context;
    /** The guest stopped by itself (poweroff, reboot, or a graceful stop
     *  request it honoured). */
    void (*guest_did_stop)(void *context);
    /** The VM stopped because of an error. The receiver owns `error`. */
    void (*did_stop_with_error)(void *context, VMZErrorRef error);
    /** Called exactly once, by vmz_release() (or vmz_create() when it
     *  fails), after the last callback: the place to free `context`. When
     *  vmz_release() is called from inside one of this VM's callbacks, it
     *  runs later on the VM's queue, after the VM's end (see vmz_release). */
    void (*release_context)(void *context);
    /** ABI 3: the VM's life ended, for any reason, the caller's own stops
     *  included: exactly once for every vmz_start() that returned true, as
     *  the last callback of that life (release_context aside). `signal` is
     *  the signal number for VMZ_END_KILLED_BY_SIGNAL, else 0. `error` is
     *  non-NULL for START_FAILED and ENGINE_ERROR and may carry details for
     *  the others (the engine's words); the receiver owns it. Called in
     *  addition to guest_did_stop / did_stop_with_error and the
     *  completions. */
    void (*did_end)(void *context, VMZEndReason reason, int32_t signal, VMZErrorRef error);
    /** ABI 3: the VM entered `state`: every transition, exactly once, in
     *  order, before the callbacks and completions it causes (did_end
     *  comes after the final state). */
    void (*state_did_change)(void *context, VMZState state);
    /** ABI 3: a network device's host side went away (macOS: the
     *  framework's attachmentWasDisconnectedWithError; may fire more than
     *  once). `device_index` counts the VM's network devices from 0. The
     *  VM keeps running. The receiver owns `error`. */
    void (*network_did_disconnect)(void *context, uint32_t device_index, VMZErrorRef error);
} VMZCallbacks;

/** sizeof(VMZCallbacks) in ABI 1 and 2 (before did_end), the smallest
 *  struct_size accepted; the fields after it then read as NULL. */
#define VMZ_CALLBACKS_SIZE_V2 40

/** Log levels of vmz_set_log_callback(). */
typedef enum VMZLogLevel {
    VMZ_LOG_ERROR = 1,
    VMZ_LOG_WARN = 2,
    VMZ_LOG_INFO = 3,
    VMZ_LOG_DEBUG = 4,
    VMZ_LOG_TRACE = 5,
} VMZLogLevel;

/** Receives the bridge's log lines. `message` is borrowed for the call. */
typedef void (*VMZLogCallback)(void *context, VMZLogLevel level, const char *message);

/** The ABI version of the linked bridge (VMZ_ABI_VERSION it was built with). */
uint32_t vmz_abi_version(void);

/**
 * Fills `limits` (its struct_size set by the caller) with the engine's limits.
 * Returns false and sets `*error` (if `error` is not NULL) on failure.
 */
bool vmz_get_limits(VMZLimits *limits, VMZErrorRef *error);

/**
 * Checks `config` without starting anything: strings, files (exist, regular,
 * readable), CPU count, memory size, descriptors, accelerator. Returns true
 * if valid; otherwise false and sets `*error` (if `error` is not NULL),
 * which the caller owns.
 */
bool vmz_validate_config(const VMZConfig *config, VMZErrorRef *error);

/**
 * Validates `config` and creates a VM in the CREATED state; nothing runs
 * yet. `callbacks` may be NULL. Returns the handle, owned by the bridge and
 * released with vmz_release(); or NULL with `*error` set (the caller owns
 * it), in which case callbacks->release_context has been called (unless
 * `callbacks` itself was refused for its struct_size: then nothing in it is
 * trusted or called).
 */
VMZHandle vmz_create(const VMZConfig *config, const VMZCallbacks *callbacks, VMZErrorRef *error);

/**
 * Starts the VM (asynchronous). Returns false with `*error` set if it cannot
 * start now (wrong state, bad handle); `completion` is then not called.
 * Otherwise returns true and `completion` is called exactly once, on the VM's
 * queue, when the VM runs or failed to start (possibly before vmz_start
 * returns, when the engine fails at once). vmz_release() before that calls
 * it with a VMZ_ERROR_INVALID_STATE error.
 */
bool vmz_start(VMZHandle handle, VMZCompletionCallback completion, void *context, VMZErrorRef *error);

/**
 * Asks the guest to stop (ACPI power button). Returns once the request is
 * delivered; the guest decides whether and when to stop, and the VM's end is
 * reported by guest_did_stop. Returns false with `*error` set when the VM is
 * not running.
 */
bool vmz_request_stop(VMZHandle handle, VMZErrorRef *error);

/**
 * Stops the VM at once (the guest gets no say). Returns false with `*error`
 * set if there is nothing to stop; otherwise true, and `completion` (may be
 * NULL) is called exactly once when the VM has stopped.
 */
bool vmz_force_stop(VMZHandle handle, VMZCompletionCallback completion, void *context, VMZErrorRef *error);

/**
 * ABI 3: stops the VM the polite way, then the hard way: asks the guest
 * (as vmz_request_stop()) and, if the VM has not ended `grace_ms`
 * milliseconds later, forces the stop (as vmz_force_stop()). A VM that
 * cannot take a request (still starting, paused) is forced at once.
 * Returns false with `*error` set when there is nothing to stop; otherwise
 * true, and `completion` (may be NULL) is called exactly once when the VM
 * has ended (did_end says how: POWERED_OFF if the guest complied in time,
 * FORCED otherwise, or whatever ended it first).
 */
bool vmz_stop(VMZHandle handle, uint64_t grace_ms, VMZCompletionCallback completion, void *context, VMZErrorRef *error);

/**
 * ABI 3: pauses a running VM (its vCPUs stop; memory, devices and the
 * console stay). Returns false with `*error` set when the VM is not
 * RUNNING; otherwise true, and `completion` (may be NULL) is called exactly
 * once: NULL error when PAUSED, or the error (the VM is then RUNNING again,
 * or ended).
 */
bool vmz_pause(VMZHandle handle, VMZCompletionCallback completion, void *context, VMZErrorRef *error);

/**
 * ABI 3: resumes a PAUSED VM. Returns false with `*error` set when it is
 * not paused; otherwise true, and `completion` (may be NULL) is called
 * exactly once: NULL error when RUNNING again, or the error.
 */
bool vmz_resume(VMZHandle handle, VMZCompletionCallback completion, void *context, VMZErrorRef *error);

/** The VM's current state, or VMZ_STATE_ERROR for an invalid handle. */
VMZState vmz_get_state(VMZHandle handle);

/**
 * Releases a handle: stops the VM at once if it still runs (did_end then
 * reports VMZ_END_FORCED), waits until it has stopped, answers pending
 * completions with a VMZ_ERROR_INVALID_STATE error, calls release_context.
 * NULL is ignored.
 *
 * From inside one of this VM's own callbacks (on its queue, which cannot
 * wait for itself) it returns at once instead: the handle is invalid from
 * then on, and the rest (the VM's end, did_end, release_context) follows on
 * the VM's queue after the running callback has returned. The callback's
 * context stays valid until release_context.
 */
void vmz_release(VMZHandle handle);

/**
 * Runs the main dispatch queue forever (never returns). Only for callers that
 * want the main-queue style; the bridge itself never needs it, because every
 * VM has its own queue.
 */
void vmz_run_loop(void);

/** The error's code (a VMZErrorCode), or 0 for NULL. */
int32_t vmz_error_code(VMZErrorRef error);

/**
 * The error's message, UTF-8, NUL-terminated. Owned by the error: valid
 * until vmz_error_free(error). Never NULL for a live error.
 */
const char *vmz_error_message(VMZErrorRef error);

/**
 * Frees an error. NULL is ignored. Freeing an error twice is a bug of the
 * caller; the bridge detects it (it logs and ignores the second free) as
 * long as the pointer has not been reused.
 */
void vmz_error_free(VMZErrorRef error);

/**
 * Sets the function that receives the bridge's log lines (NULL: none) and
 * the most verbose level it wants. Process-wide.
 */
void vmz_set_log_callback(VMZLogCallback callback, void *context, VMZLogLevel max_level);

/**
 * vsock (ABI 3): connects to `port` of the guest, on the caller's thread,
 * waiting at most `timeout_ms` milliseconds (0: 10 s). Returns a connected
 * stream socket, owned by the caller (close-on-exec, blocking); or -1 with
 * `*error` set: VMZ_ERROR_CONNECTION_REFUSED when nobody listens there,
 * VMZ_ERROR_INVALID_STATE when the VM is not running, VMZ_ERROR_DEVICE
 * when it has no vsock device. Must not be called from a callback of the
 * same VM (it would wait for its own queue: VMZ_ERROR_INVALID_STATE).
 */
int32_t vmz_vsock_connect(VMZHandle handle, uint32_t port, uint32_t timeout_ms, VMZErrorRef *error);

/**
 * The answer to vmz_vsock_connect_async(), on the VM's queue: `fd` is a
 * connected stream socket owned by the receiver (close-on-exec, blocking)
 * and `error` NULL; or `fd` is -1 and `error` says why (owned by the
 * receiver, freed with vmz_error_free()).
 */
typedef void (*VMZVsockConnectCallback)(void *context, int32_t fd, VMZErrorRef error);

/**
 * vsock (ABI 3): connects to `port` of the guest without waiting. Returns
 * false with `*error` set when the VM is not running
 * (VMZ_ERROR_INVALID_STATE), has no vsock device (VMZ_ERROR_DEVICE) or
 * `callback` is NULL; `callback` is then never called. Otherwise true, and
 * `callback` is called exactly once, on the VM's queue, after this call
 * has returned: with the descriptor, or with the error
 * (VMZ_ERROR_CONNECTION_REFUSED when nobody listens there or the guest does
 * not answer within `timeout_ms` milliseconds, 0: 10 s;
 * VMZ_ERROR_INVALID_STATE when the VM ends first, or is released first:
 * then before vmz_release() returns). `context` must stay valid until the
 * callback. May be called from a callback of the same VM.
 */
bool vmz_vsock_connect_async(VMZHandle handle, uint32_t port, uint32_t timeout_ms, VMZVsockConnectCallback callback,
                             void *context, VMZErrorRef *error);

/**
 * Called on the VM's queue for each connection the guest makes to a port
 * the host listens on (vmz_vsock_listen). `fd` is a connected stream
 * socket owned by the receiver (close-on-exec, blocking).
 */
typedef void (*VMZVsockAcceptCallback)(void *context, uint32_t port, int32_t fd);

/**
 * vsock (ABI 3): accepts the guest's connections to `port` of the host
 * from now on (in any state before the VM has ended; connections made
 * before are refused), each passed to `callback` with `context`.
 * VMZ_ERROR_PORT_IN_USE when this VM already listens on `port`. `context`
 * must stay valid until vmz_vsock_stop_listening(port) or vmz_release()
 * returns; no callback runs after that.
 */
bool vmz_vsock_listen(VMZHandle handle, uint32_t port, VMZVsockAcceptCallback callback, void *context,
                      VMZErrorRef *error);

/**
 * vsock (ABI 3): stops accepting the guest's connections to `port`; when
 * it returns, no callback for that port runs any more. Connections already
 * handed out stay open. false with VMZ_ERROR_INVALID_ARGUMENT when the host
 * does not listen on `port`.
 */
bool vmz_vsock_stop_listening(VMZHandle handle, uint32_t port, VMZErrorRef *error);

/**
 * Memory balloon (ABI 3): asks the guest to give back memory until it has
 * `bytes` (a whole number of MiB, from the engine's minimum up to the
 * config's memory_size, which gives everything back). Returns once the
 * request is delivered; the guest's balloon driver acts on it in its own
 * time. VMZ_ERROR_INVALID_STATE when the VM is not running,
 * VMZ_ERROR_DEVICE without a balloon (VMZ_OMIT_BALLOON), VMZ_ERROR_MEMORY_SIZE
 * for a size out of range.
 */
bool vmz_set_memory_target(VMZHandle handle, uint64_t bytes, VMZErrorRef *error);

/** Number of live bridge objects of each kind, for leak checks in tests. */
typedef struct VMZLiveObjects {
    uint64_t handles;
    uint64_t errors;
} VMZLiveObjects;

/** Counts live handles and errors (not yet released / freed). */
VMZLiveObjects vmz_live_objects(void);

#ifdef __cplusplus
}
#endif

#endif /* LIBVMZ_H */
