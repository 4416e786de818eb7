// The Linux engine: QEMU as a child process, driven over QMP.
//
// Boot path: the `q35` machine with -nodefaults and QEMU's minimal firmware
// qboot when it is installed. It boots both a bzImage and an uncompressed
// vmlinux through its PVH entry, and it has ACPI, so a graceful stop is the
// ACPI power button (QMP system_powerdown). Why q35 and qboot rather than
// `pc`, SeaBIOS or `microvm`, with the timings: BENCHMARKS.md, "How the
// boot path was chosen".
//
// Files reach QEMU as inherited descriptors (/dev/fd/N), never as paths on
// its command line: no path can be read as a QEMU option, and the file that
// was validated is the file that boots.

#if os(Linux)
import Glibc
import Dispatch

/// Descriptor numbers in the QEMU child.
private enum ChildFD {
    static let stdin: Int32 = 0, stdout: Int32 = 1, stderr: Int32 = 2
    static let kernel: Int32 = 3, initrd: Int32 = 4, qmp: Int32 = 5
    static let count = 6
}

final class QEMUEngine: VMEngine {
    let config: ParsedConfig
    private let queue: DispatchQueue
    private weak var delegate: EngineDelegate?
    private let binary: String
    /// Accelerator, machine, CPU, firmware (QEMUMachineType.swift).
    private let machine: QEMUMachineType

    /// Private copies of the caller's serial descriptors, owned here.
    private var input: SerialDescriptor?
    private var output: SerialDescriptor?
    /// The vsock device, if any (QEMUVsock.swift).
    var vsock: QEMUVsock?
    /// Duplicates of the serial ports' sockets, owned here (QEMUConsole.swift).
    var portFDs: [Int32] = []
    /// Duplicates of the socket networks' sockets, owned here (QEMUNetwork.swift).
    var networkFDs: [Int32] = []

    // Run time, on `queue`.
    private var pid: pid_t = -1
    private var processSource: DispatchSourceRead?
    private var stderrSource: DispatchSourceRead?
    private var stderrTail = [UInt8]()
    private var qmp: QMPClient?
    private var startCompletion: ((BridgeError?) -> Void)?
    /// Bounds `start` (config.startTimeout; shorter once QMP closed early).
    private var startTimer: DispatchSourceTimer?
    /// What `start` waits for now, for the timeout's message.
    private var startWaitingFor = "QEMU's QMP greeting"
    private var qmpClosedWhileStarting = false
    /// Why the start was given up (QEMU is being killed): the start's error.
    private var startError: BridgeError?
    /// The child's descriptor names and what they are, for QEMU's messages.
    private var childFileNames: [(String, String)] = []
    private var outcome = QEMUOutcome()
    private var pauseCompletion: ((BridgeError?) -> Void)?
    private var resumeCompletion: ((BridgeError?) -> Void)?
    private var forced = false
    private var exited = false
    /// virtiofsd's path when the VM has shares.
    private let virtiofsd: String?
    /// One virtiofsd per share while QEMU runs (QEMUShares.swift).
    private var daemons: [Virtiofsd] = []
    /// Why a virtiofsd ended the VM, if one did.
    private var daemonFailure: String?

    private static let stderrLimit = 16 * 1024
    /// Bound of one QMP exchange once the VM runs (request_stop): QEMU's
    /// monitor answers in milliseconds unless QEMU is stopped or frozen.
    static let qmpTimeout: Double = 3
    /// How long QEMU may take to exit after closing QMP while starting
    /// (it does that on its way out after an error) before it is killed.
    private static let exitGrace: Double = 2

    // MARK: Limits and validation

    static func limits() throws -> Limits {
        let cpus = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let pages = UInt64(max(0, sysconf(Int32(_SC_PHYS_PAGES))))
        let pageSize = UInt64(max(0, sysconf(Int32(_SC_PAGESIZE))))
        let physical = pages * pageSize / mib * mib
        return Limits(
            minCPUs: 1,
            // QEMU's q35 machine takes more (TCG), but more vCPUs than host
            // CPUs only slows a guest down, and it matches what
            // Virtualization.framework allows.
            maxCPUs: min(cpus, 255),
            minMemory: 64 * mib,
            maxMemory: max(64 * mib, physical),
            // COMMAND_LINE_SIZE of x86 and arm64 Linux is 2048, NUL included.
            maxCommandLine: 2047
        )
    }

    static func validate(_ config: ParsedConfig) throws {
        try QEMUMachineType.checkKernel(config.kernelPath, config.guestArchitecture)
        _ = try resolveAccelerator(config.accelerator, for: config.guestArchitecture)
        try QEMUVsock.validate(config)
        _ = try findBinary(for: config.guestArchitecture)
        if !config.shares.isEmpty {
            _ = try Virtiofsd.find()
            try Virtiofsd.checkMultiDirectory(config.shares)
        }
    }

    /// The accelerator to use: the caller's explicit choice, else VMZ_ACCEL,
    /// else KVM only where it really runs. A guest of another architecture
    /// than the host's runs under TCG only.
    static func resolveAccelerator(_ requested: Accelerator, for guest: GuestArchitecture) throws -> Accelerator {
        var choice = requested
        if choice == .auto, let env = environment("VMZ_ACCEL") {
            switch env.lowercased() {
            case "kvm", "hardware": choice = .hardware
            case "tcg", "software": choice = .software
            case "auto": choice = .auto
            default:
                throw BridgeError(VMZ_ERROR_ACCELERATOR, "VMZ_ACCEL=\(env) is not one of kvm, tcg, auto")
            }
        }
        if guest != .host && choice != .software {
            if choice == .hardware {
                throw BridgeError(
                    VMZ_ERROR_ACCELERATOR,
                    "KVM runs only guests of the host's architecture (\(GuestArchitecture.host)), not \(guest): use the auto or software accelerator")
            }
            log(.debug, "accelerator: TCG, because the guest is \(guest) and the host \(GuestArchitecture.host)")
            return .software
        }
        switch choice {
        case .software:
            return .software
        case .hardware:
            if let why = kvmUnusable(requireCPUFlag: false) {
                throw BridgeError(VMZ_ERROR_ACCELERATOR, "KVM was requested but \(why); use the auto or software accelerator")
            }
            if let why = kvmCannotRunGuests() {
                throw BridgeError(
                    VMZ_ERROR_ACCELERATOR,
                    "KVM was requested, but \(why): /dev/kvm opens, yet QEMU cannot run a guest with it; use the auto accelerator (it picks software emulation here) or the software one"
                )
            }
            return .hardware
        case .auto:
            if let why = kvmUnusable(requireCPUFlag: true) {
                log(.debug, "accelerator: TCG, because \(why)")
                return .software
            }
            log(.debug, "accelerator: KVM")
            return .hardware
        }
    }

    /// Why KVM cannot be used here, or nil. Auto-detection is strict: a
    /// KVM that opens but cannot run a guest (nested without hardware
    /// support, the software-only kvm_pvm module) hangs guests forever.
    private static func kvmUnusable(requireCPUFlag: Bool) -> String? {
        let fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)
        if fd < 0 { return "/dev/kvm cannot be opened (\(String(cString: strerror(errno))))" }
        close(fd)
        guard requireCPUFlag else { return nil }
        return kvmCannotRunGuests()
    }

    /// Why a KVM that opens still cannot run a stock guest, or nil: the
    /// software-only kvm_pvm module, or (x86) a CPU without vmx/svm.
    private static func kvmCannotRunGuests() -> String? {
        if access("/sys/module/kvm_pvm", F_OK) == 0 {
            return "this host's KVM is the kvm_pvm module (software-only KVM)"
        }
        #if arch(x86_64)
        if !cpuHasVirtualizationFlag() { return "the CPU advertises neither vmx nor svm" }
        #endif
        return nil
    }

    private static func cpuHasVirtualizationFlag() -> Bool {
        var found = false
        forEachLine(ofFile: "/proc/cpuinfo") { s in
            guard s.hasPrefix("flags") else { return true }
            let flags = s.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
            found = flags.contains("vmx") || flags.contains("svm")
            return false
        }
        return found
    }

    /// VMZ_QEMU (whatever the guest's architecture), else
    /// qemu-system-<guest architecture> on PATH: a regular file we may
    /// execute.
    private static func findBinary(for guest: GuestArchitecture) throws -> String {
        if let env = environment("VMZ_QEMU") {
            var st = stat()
            guard stat(env, &st) == 0, st.st_mode & S_IFMT == S_IFREG, access(env, X_OK) == 0 else {
                throw BridgeError(VMZ_ERROR_ENGINE_UNAVAILABLE, "VMZ_QEMU=\(env) is not an executable file (unset it to use qemu-system-* from PATH)")
            }
            return env
        }
        let name = QEMUMachineType.binaryName(guest)
        if let found = findExecutable(name) { return found }
        throw BridgeError(
            VMZ_ERROR_ENGINE_UNAVAILABLE,
            "\(name) was not found on PATH (install QEMU: apt-get install \(QEMUMachineType.package(guest)), or set VMZ_QEMU)"
        )
    }

    /// qboot, QEMU's minimal x86 firmware, when it is installed with
    /// `binary` (`<prefix>/share/qemu/qboot.rom` for
    /// `<prefix>/bin/qemu-system-x86_64`, as Debian's qemu-system-data and
    /// QEMU's own `make install` place it); nil to keep SeaBIOS.
    private static func findQboot(near binary: String) -> String? {
        guard let resolved = realpath(binary, nil) else { return nil }
        let path = String(cString: resolved)
        free(resolved)
        var parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[parts.count - 2] == "bin" else { return nil }
        parts.removeLast(2)
        let candidate = parts.joined(separator: "/") + "/share/qemu/qboot.rom"
        if access(candidate, R_OK) == 0 { return candidate }
        log(.debug, "no \(candidate): booting with QEMU's default firmware")
        return nil
    }

    // MARK: Life cycle

    init(config: ParsedConfig, queue: DispatchQueue, delegate: EngineDelegate) throws {
        self.config = config
        self.queue = queue
        self.delegate = delegate
        let guest = config.guestArchitecture
        binary = try QEMUEngine.findBinary(for: guest)
        virtiofsd = config.shares.isEmpty ? nil : try Virtiofsd.find()
        machine = QEMUMachineType(
            architecture: guest,
            accelerator: try QEMUEngine.resolveAccelerator(config.accelerator, for: guest),
            firmware: guest == .x86_64 ? QEMUEngine.findQboot(near: binary) : nil)
        if config.vsockCID != 0 { vsock = try QEMUVsock(config: config, queue: queue) }
        if config.inputFD != VMZ_FD_DEFAULT {
            input = try SerialDescriptor(of: config.inputFD, reading: true)
            if isatty(config.inputFD) != 0 {
                log(.warn, "serial input is a terminal: QEMU runs in its own process group and cannot read it; pass a pipe")
            }
        }
        do {
            output = try SerialDescriptor(
                of: config.outputFD == VMZ_FD_DEFAULT ? STDOUT_FILENO : config.outputFD, reading: false)
            for port in config.serialPorts { portFDs.append(try duplicate(port.fd)) }
            for net in config.networks where net.kind == .socket { networkFDs.append(try duplicate(net.fd)) }
        } catch {
            closeSerial()
            throw error
        }
    }

    deinit {
        closeSerial()
        log(.trace, "QEMU engine freed")
    }

    private func closeSerial() {
        input?.close()
        output?.close()
        for fd in portFDs + networkFDs { close(fd) }
        portFDs = []
        networkFDs = []
    }

    func start(completion: @escaping (BridgeError?) -> Void) {
        startCompletion = completion
        do {
            try launch()
        } catch let error as BridgeError {
            startCompletion = nil
            vsock?.shutdown()
            completion(error)
        } catch {
            startCompletion = nil
            completion(BridgeError(VMZ_ERROR_INTERNAL, "\(error)"))
        }
    }

    /// QEMU's arguments; `pass` hands a descriptor to the child and returns
    /// its number there (for `fd=` options). `disks`: the disks' open
    /// images; `shares`: QEMU's ends of the virtiofsd sockets.
    private func arguments(disks: [Int32], shares: [Int32], pass: (Int32) -> Int32) -> [String] {
        var args = [binary, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]
        args += machine.arguments
        args += ["-smp", "\(config.cpuCount)", "-m", "\(config.memorySize / mib)M"]
        args += sharedMemoryArguments()
        args += ["-kernel", "/dev/fd/\(ChildFD.kernel)"]
        if config.initrdPath != nil { args += ["-initrd", "/dev/fd/\(ChildFD.initrd)"] }
        args += ["-append", config.effectiveCommandLine]
        args += consoleArguments(pass: pass)
        args += vsock?.qemuArguments ?? []
        args += balloonArguments()
        args += ["-chardev", "socket,id=qmp,fd=\(ChildFD.qmp),server=on,wait=off", "-mon", "chardev=qmp,mode=control"]
        args += networkArguments(pass: pass)
        args += QEMUDisks.arguments(config.disks, childFDs: disks.map(pass))
        args += QEMUShares.arguments(config.shares, childFDs: shares.map(pass))
        return args
    }

    private func launch() throws {
        // Everything opened here is closed at the end of this function: the
        // child has its copies, and the QMP client has its own connection.
        var opened: [Int32] = []
        defer { for fd in opened { close(fd) } }
        func openFile(_ path: String, _ code: VMZErrorCode, _ what: String) throws -> Int32 {
            let fd = try openRegularFile(path, code, what)
            opened.append(fd)
            return fd
        }

        var childFDs = [Int32](repeating: -1, count: ChildFD.count)
        // Disks first: one in use by another VM fails the start before
        // anything else is made.
        let disks = try Disk.openAll(config.disks)
        opened += disks
        if let input {
            childFDs[Int(ChildFD.stdin)] = try input.forChild(opened: &opened)
        } else {
            let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
            if null < 0 { throw BridgeError.system("open", errno, "/dev/null") }
            opened.append(null)
            childFDs[Int(ChildFD.stdin)] = null
        }
        if let output {
            childFDs[Int(ChildFD.stdout)] = try output.forChild(opened: &opened)
        }
        let kernel = try QEMUMachineType.bootableKernel(config.kernelPath, config.guestArchitecture)
        childFDs[Int(ChildFD.kernel)] = try openFile(kernel, VMZ_ERROR_KERNEL, "kernel")
        childFileNames = [(
            "/dev/fd/\(ChildFD.kernel)",
            kernel == config.kernelPath
                ? quoted(kernel)
                : "\(quoted(config.kernelPath)) (its uncompressed copy \(quoted(kernel)))"
        )]
        if let initrd = config.initrdPath {
            childFDs[Int(ChildFD.initrd)] = try openFile(initrd, VMZ_ERROR_INITRD, "initrd")
            childFileNames.append(("/dev/fd/\(ChildFD.initrd)", quoted(initrd)))
        }

        var errPipe: [Int32] = [-1, -1]
        let pipeErr = vmz_pipe_cloexec(&errPipe)
        if pipeErr != 0 { throw BridgeError.system("pipe2", pipeErr, "QEMU's stderr") }
        opened.append(errPipe[1])
        let stderrRead = errPipe[0]
        childFDs[Int(ChildFD.stderr)] = errPipe[1]
        var stderrReadOwned = true
        defer { if stderrReadOwned { close(stderrRead) } }

        // The QMP socket lives in a private directory (0700) only until the
        // client is connected; then both are removed.
        let dir = try makePrivateDirectory()
        let socketPath = dir + "/qmp.sock"
        defer {
            unlink(socketPath)
            rmdir(dir)
        }
        let listener = try listenUnix(socketPath, backlog: 1, what: "QMP socket")
        opened.append(listener)
        childFDs[Int(ChildFD.qmp)] = listener
        // Connected before QEMU runs (the connection waits in the
        // listener's backlog): nothing can fail after the spawn that would
        // leave QEMU running.
        let client = try QMPClient(path: socketPath, queue: queue)

        // The shares' daemons, last: from here to the spawn nothing else
        // can fail.
        var shareFDs: [Int32] = []
        if let virtiofsd {
            let started = try QEMUShares.start(
                config.shares, binary: virtiofsd, directory: dir, stderr: errPipe[1], queue: queue
            ) { [weak self] daemon in self?.daemonExited(daemon) }
            daemons = started.daemons
            shareFDs = started.clientFDs
            opened += shareFDs
        }
        var daemonsOwnedHere = true
        defer { if daemonsOwnedHere { stopDaemons() } }

        var passed: [Int32] = []
        try vsock?.start()
        let args = arguments(disks: disks, shares: shareFDs) { fd in
            passed.append(fd)
            return Int32(ChildFD.count + passed.count - 1)
        }
        childFDs += passed
        log(.debug, "spawning: \(args.map(quoted).joined(separator: " "))")
        var cArgs = args.map { strdup($0) }
        cArgs.append(nil)
        defer { for p in cArgs { free(p) } }
        var childPid: pid_t = -1
        var pidfd: Int32 = -1
        let rc = vmz_spawn(binary, &cArgs, childFDs, Int32(childFDs.count), &childPid, &pidfd)
        if rc != 0 {
            // EINVAL/EMFILE: the child could not move its descriptors below
            // the limit.
            let limit = descriptorLimitNote(rc == EINVAL ? EMFILE : rc)
            throw BridgeError(VMZ_ERROR_START_FAILED, "cannot run \(binary): \(String(cString: strerror(rc)))\(limit)")
        }
        // From here on nothing throws: QEMU is ended (killed if need be)
        // and reaped through processExited on every path.
        pid = childPid
        daemonsOwnedHere = false
        log(.info, "QEMU started, pid \(pid), \(machine.architecture) guest, accelerator \(machine.accelerator == .hardware ? "kvm" : "tcg")")

        stderrReadOwned = false
        watchStderr(stderrRead)
        let ps = DispatchSource.makeReadSource(fileDescriptor: pidfd, queue: queue)
        ps.setEventHandler { [self] in processExited() }
        ps.setCancelHandler { close(pidfd) }
        processSource = ps
        ps.resume()

        client.onMessage = { [unowned self] in self.handle($0) }
        client.onClose = { [unowned self] in self.qmpClosed() }
        qmp = client
        armStartTimer(after: config.startTimeout)
        client.resume()
    }

    /// (Re)arms the start's bound.
    private func armStartTimer(after seconds: Double) {
        startTimer?.cancel()
        let t = DispatchSource.makeTimerSource(queue: queue)
        t.schedule(deadline: .now() + seconds)
        t.setEventHandler { [weak self] in self?.startTimedOut() }
        startTimer = t
        t.resume()
    }

    private func startTimedOut() {
        guard startCompletion != nil, !exited else { return }
        if qmpClosedWhileStarting {
            abortStart(BridgeError(
                VMZ_ERROR_START_FAILED,
                "QEMU closed its QMP connection before the handshake completed and did not exit\(stderrNote)"))
        } else {
            abortStart(BridgeError(
                VMZ_ERROR_TIMEOUT,
                "QEMU did not start within \(seconds(config.startTimeout)) (start_timeout): waited for \(startWaitingFor)\(stderrNote)"))
        }
    }

    /// Gives the start up with `error`: QEMU is killed, and processExited
    /// reaps it and answers the start with `error`.
    private func abortStart(_ error: BridgeError) {
        guard startCompletion != nil, !exited else { return }
        if startError == nil { startError = error }
        log(.warn, "start failed: \(error.message); killing QEMU (pid \(pid))")
        startTimer?.cancel()
        startTimer = nil
        kill(pid, SIGKILL)
    }

    /// QEMU closed QMP. While starting, that is QEMU on its way out after
    /// an error (its exit status and stderr say more): give it a moment to
    /// exit, then kill it.
    private func qmpClosed() {
        guard startCompletion != nil, !exited else { return }
        qmpClosedWhileStarting = true
        armStartTimer(after: QEMUEngine.exitGrace)
    }

    private func watchStderr(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let s = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        s.setEventHandler { [self] in
            if drainStderr(fd) { stderrSource?.cancel() }
        }
        s.setCancelHandler { close(fd) }
        stderrSource = s
        s.resume()
    }

    /// Reads what QEMU wrote to stderr, keeping the tail; true at EOF.
    private func drainStderr(_ fd: Int32) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                stderrTail.append(contentsOf: chunk[0..<n])
                if stderrTail.count > QEMUEngine.stderrLimit {
                    stderrTail.removeFirst(stderrTail.count - QEMUEngine.stderrLimit)
                }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            return !(n < 0 && errno == EAGAIN)
        }
    }

    /// QEMU's stderr, with its names of inherited files (/dev/fd/3) replaced
    /// by what they are.
    private var stderrText: String {
        var s = String(decoding: stderrTail, as: UTF8.self)
        while s.last == "\n" || s.last == " " { s.removeLast() }
        for (name, what) in childFileNames {
            s = replacingAll(replacingAll(s, "'\(name)'", what), name, what)
        }
        if s.contains("Too many open files") { s += descriptorLimitNote(EMFILE) }
        return s
    }

    private var stderrNote: String {
        let t = stderrText
        return t.isEmpty ? "" : ": \(t)"
    }

    // MARK: QMP

    private func handle(_ message: JSON) {
        if message["QMP"] != nil {
            log(.trace, "QMP greeting")
            guard startCompletion != nil, let qmp else { return }
            startWaitingFor = "QEMU's answer to qmp_capabilities"
            do {
                try qmp.execute("qmp_capabilities", timeout: QEMUEngine.qmpTimeout) { [weak self] result in
                    guard let self else { return }
                    switch result {
                    case .success:
                        // QEMU loaded the kernel, built the machine and runs
                        // its main loop.
                        guard let completion = self.startCompletion, !self.exited, self.startError == nil else { return }
                        self.startCompletion = nil
                        self.startTimer?.cancel()
                        self.startTimer = nil
                        completion(nil)
                    case .failure(let e):
                        self.abortStart(BridgeError(VMZ_ERROR_START_FAILED, "QEMU refused qmp_capabilities: \(e.message)"))
                    }
                }
            } catch let e as BridgeError {
                // Closed: QEMU is on its way out (qmpClosed waits for its
                // exit, which says why).
                if !qmp.isClosed { abortStart(BridgeError(e.code, "QMP handshake: \(e.message)")) }
            } catch {}
        } else if let event = message["event"]?.string {
            log(.debug, "QMP event \(event)")
            outcome.record(event: event, data: message["data"])
        } else {
            log(.debug, "QMP: unexpected message ignored")
        }
    }

    /// QMP `stop`: answered once the vCPUs are stopped.
    func pause(completion: @escaping (BridgeError?) -> Void) {
        pauseCommand("stop", completion)
    }

    /// QMP `cont`: answered once the vCPUs run again.
    func resume(completion: @escaping (BridgeError?) -> Void) {
        pauseCommand("cont", completion)
    }

    /// Sends `command`; `completion` gets its answer, unless QEMU exits
    /// first (then the VM's end is the answer, and this one is dropped).
    private func pauseCommand(_ command: String, _ completion: @escaping (BridgeError?) -> Void) {
        guard let qmp, startCompletion == nil, !exited, !qmp.isClosed else {
            completion(BridgeError(VMZ_ERROR_INVALID_STATE, "QEMU is not running"))
            return
        }
        do {
            try qmp.execute(command, timeout: QEMUEngine.qmpTimeout) { [weak self] result in
                guard let self, !self.exited else { return }
                switch result {
                case .success: completion(nil)
                case .failure(let e): completion(BridgeError(VMZ_ERROR_RUNTIME, "QMP \(command): \(e.message)"))
                }
            }
        } catch let e as BridgeError {
            completion(e)
        } catch {
            completion(BridgeError(VMZ_ERROR_INTERNAL, "\(error)"))
        }
    }

    func requestStop() throws {
        guard let qmp, startCompletion == nil, !exited else {
            throw BridgeError(VMZ_ERROR_INVALID_STATE, "QEMU is not running")
        }
        guard !qmp.isClosed else {
            throw BridgeError(VMZ_ERROR_INVALID_STATE, "QEMU is exiting (it closed its QMP connection)")
        }
        // The ACPI power button; the guest decides what to do with it.
        try qmp.execute("system_powerdown", timeout: QEMUEngine.qmpTimeout)
    }

    /// A QMP command for device code in other files (QEMUBalloon.swift),
    /// while QEMU runs.
    @discardableResult
    func executeWhileRunning(_ name: String, arguments: String) throws -> JSON {
        guard let qmp, startCompletion == nil, !exited, !qmp.isClosed else {
            throw BridgeError(VMZ_ERROR_INVALID_STATE, "QEMU is not running")
        }
        return try qmp.execute(name, arguments: arguments, timeout: QEMUEngine.qmpTimeout)
    }

    func forceStop() {
        forced = true
        if pid > 0 && !exited {
            kill(pid, SIGKILL)
        }
    }

    /// A virtiofsd failed while QEMU runs: the guest's file system would
    /// hang, so the VM ends with an error naming the share.
    private func daemonExited(_ daemon: Virtiofsd) {
        guard !exited, daemonFailure == nil else { return }
        // virtiofsd exits with status 0 when QEMU closes its connection:
        // QEMU is on its way out (a guest poweroff), and its own exit says
        // how the VM ended.
        if daemon.status?.exitedCleanly == true {
            log(.debug, "virtiofsd for \(daemon.share.name) exited: QEMU disconnected")
            return
        }
        let why = "virtiofsd for \(daemon.share.name) \(daemon.status?.description ?? "ended")\(stderrNote)"
        daemonFailure = why
        if startCompletion != nil {
            abortStart(BridgeError(VMZ_ERROR_START_FAILED, why))
        } else {
            log(.error, "\(why): stopping the VM")
            kill(pid, SIGKILL)
        }
    }

    /// Kills and reaps every virtiofsd of this VM.
    private func stopDaemons() {
        for daemon in daemons { daemon.stop() }
        daemons = []
    }

    private func processExited() {
        guard !exited else { return }
        let status = ChildExit.reap(pid)
        exited = true
        processSource?.cancel()
        processSource = nil
        stopDaemons()
        startTimer?.cancel()
        startTimer = nil
        // Events QEMU sent before it died are still in the socket: read them
        // now, so the order of the two event sources does not matter.
        qmp?.onClose = nil
        qmp?.readAvailable()
        qmp?.disconnect()
        qmp = nil
        if let s = stderrSource {
            _ = drainStderr(Int32(s.handle))
            s.cancel()
            stderrSource = nil
        }
        closeSerial()
        vsock?.shutdown()

        log(.debug, "QEMU pid \(pid) \(status.description)")
        // A failed virtiofsd (daemonExited) killed QEMU: say that, not the kill.
        let how = daemonFailure.map { failure in forced ? .forced : EngineEnd.error(BridgeError(VMZ_ERROR_RUNTIME, failure)) }
            ?? outcome.classify(status, forced: forced, stderr: stderrText)
        if let completion = startCompletion, !forced {
            startCompletion = nil
            if let startError {
                completion(startError)
                return
            }
            let files = zip(["kernel", "initrd"], childFileNames).map { "\($0) \($1.1)" }.joined(separator: ", ")
            let kvmHint = machine.accelerator == .hardware
                ? " (KVM was requested: where this host's KVM cannot run guests, use the auto or software accelerator)" : ""
            switch how {
            case .error(let e): completion(BridgeError(VMZ_ERROR_START_FAILED, "\(e.message) (booting \(files))\(kvmHint)"))
            default: completion(BridgeError(VMZ_ERROR_START_FAILED, "QEMU stopped while starting (booting \(files))\(kvmHint)"))
            }
            return
        }
        startCompletion = nil
        delegate?.engineDidStop(how)
    }
}
#endif
