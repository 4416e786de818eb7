// A SIGNATURE STUB of Apple's Virtualization.framework, for type-checking
// swift/VZEngine.swift on Linux (scripts/typecheck-macos.sh). It is NEVER
// compiled into or linked with the library: the build script compiles only
// swift/*.swift, not this subdirectory, and on macOS the real framework is
// used.
//
// Rules for this file:
//  - It may only contain declarations that Apple's SDK declares, with the
//    same names, types, labels, optionality and throwing, as Apple's
//    headers, .swiftinterface files and documentation give them. Nothing invented:
//    an engine that type-checks here must use only real API.
//  - Only what swift/VZEngine.swift uses: add a declaration here when the
//    engine starts using it, never before.
//  - Bodies are fatalError(): nothing here ever runs.
//  - Deliberate differences, forced by Linux (no Objective-C runtime):
//    * the delegate protocol's requirements are plain, with empty default
//      implementations in an extension, where Apple has `@objc optional`;
//      scripts/typecheck-macos.sh also builds this module with
//      -D VMZ_STUB_NO_DEFAULTS so that a delegate method whose signature
//      does not match (and would silently never be called) is an error;
//    * abstract base classes get an `internal` initializer (invisible to
//      the engine) so that their subclasses can be declared; Apple's are
//      unavailable, and so is a public `init()` here;
//    * NSCopying conformances and @available annotations beyond the
//      macOS 12 ones are left out (the engine does not use them);
//    * the value of VZErrorDomain is a placeholder (the engine compares
//      against the constant, never against a literal).

import Dispatch
import Foundation

// MARK: - Errors

/// ObjC: `NSErrorDomain const VZErrorDomain` (macOS 11).
@available(macOS 11.0, *)
public let VZErrorDomain: String = "placeholder: the real value comes from the SDK"

// MARK: - Configuration

@available(macOS 11.0, *)
open class VZVirtualMachineConfiguration: NSObject {
    public override init() { fatalError() }

    open var bootLoader: VZBootLoader? { get { fatalError() } set { fatalError() } }
    open var memorySize: UInt64 { get { fatalError() } set { fatalError() } }
    open var cpuCount: Int { get { fatalError() } set { fatalError() } }
    open var serialPorts: [VZSerialPortConfiguration] { get { fatalError() } set { fatalError() } }
    open var networkDevices: [VZNetworkDeviceConfiguration] { get { fatalError() } set { fatalError() } }
    open var entropyDevices: [VZEntropyDeviceConfiguration] { get { fatalError() } set { fatalError() } }
    open var socketDevices: [VZSocketDeviceConfiguration] { get { fatalError() } set { fatalError() } }
    open var memoryBalloonDevices: [VZMemoryBalloonDeviceConfiguration] { get { fatalError() } set { fatalError() } }
    @available(macOS 13.0, *)
    open var consoleDevices: [VZConsoleDeviceConfiguration] { get { fatalError() } set { fatalError() } }
    open var storageDevices: [VZStorageDeviceConfiguration] { get { fatalError() } set { fatalError() } }
    @available(macOS 12.0, *)
    open var directorySharingDevices: [VZDirectorySharingDeviceConfiguration] {
        get { fatalError() }
        set { fatalError() }
    }
    @available(macOS 12.0, *)
    open var platform: VZPlatformConfiguration { get { fatalError() } set { fatalError() } }

    open func validate() throws { fatalError() }

    open class var minimumAllowedMemorySize: UInt64 { fatalError() }
    open class var maximumAllowedMemorySize: UInt64 { fatalError() }
    open class var minimumAllowedCPUCount: Int { fatalError() }
    open class var maximumAllowedCPUCount: Int { fatalError() }
}

// MARK: - Boot loader

@available(macOS 11.0, *)
open class VZBootLoader: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 11.0, *)
open class VZLinuxBootLoader: VZBootLoader {
    public init(kernelURL: URL) { fatalError() }
    open var kernelURL: URL { get { fatalError() } set { fatalError() } }
    open var commandLine: String { get { fatalError() } set { fatalError() } }
    open var initialRamdiskURL: URL? { get { fatalError() } set { fatalError() } }
}

// MARK: - Platform

@available(macOS 12.0, *)
open class VZPlatformConfiguration: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 12.0, *)
open class VZGenericPlatformConfiguration: VZPlatformConfiguration {
    public init() { fatalError() }
}

// MARK: - Serial port

@available(macOS 11.0, *)
open class VZSerialPortConfiguration: NSObject {
    internal init(stubBase: Void) { fatalError() }
    open var attachment: VZSerialPortAttachment? { get { fatalError() } set { fatalError() } }
}

@available(macOS 11.0, *)
open class VZVirtioConsoleDeviceSerialPortConfiguration: VZSerialPortConfiguration {
    public init() { fatalError() }
}

@available(macOS 11.0, *)
open class VZSerialPortAttachment: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 11.0, *)
open class VZFileHandleSerialPortAttachment: VZSerialPortAttachment {
    public init(fileHandleForReading: FileHandle?, fileHandleForWriting: FileHandle?) { fatalError() }
}

// MARK: - Console devices (virtualization-devices.md, section 3)

@available(macOS 13.0, *)
open class VZConsoleDeviceConfiguration: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 13.0, *)
open class VZVirtioConsoleDeviceConfiguration: VZConsoleDeviceConfiguration {
    public init() { fatalError() }
    open var ports: VZVirtioConsolePortConfigurationArray { fatalError() }
}

@available(macOS 13.0, *)
open class VZVirtioConsolePortConfigurationArray: NSObject {
    internal init(stubBase: Void) { fatalError() }
    open var maximumPortCount: UInt32 { get { fatalError() } set { fatalError() } }
    open subscript(portIndex: Int) -> VZVirtioConsolePortConfiguration? { get { fatalError() } set { fatalError() } }
}

@available(macOS 13.0, *)
open class VZConsolePortConfiguration: NSObject {
    internal init(stubBase: Void) { fatalError() }
    open var attachment: VZSerialPortAttachment? { get { fatalError() } set { fatalError() } }
}

@available(macOS 13.0, *)
open class VZVirtioConsolePortConfiguration: VZConsolePortConfiguration {
    public init() { fatalError() }
    open var name: String? { get { fatalError() } set { fatalError() } }
    open var isConsole: Bool { get { fatalError() } set { fatalError() } }
}

// MARK: - Memory balloon (virtualization-devices.md, section 2)

@available(macOS 11.0, *)
open class VZMemoryBalloonDeviceConfiguration: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 11.0, *)
open class VZVirtioTraditionalMemoryBalloonDeviceConfiguration: VZMemoryBalloonDeviceConfiguration {
    public init() { fatalError() }
}

@available(macOS 11.0, *)
open class VZMemoryBalloonDevice: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 11.0, *)
open class VZVirtioTraditionalMemoryBalloonDevice: VZMemoryBalloonDevice {
    open var targetVirtualMachineMemorySize: UInt64 { get { fatalError() } set { fatalError() } }
}

// MARK: - vsock (virtualization-devices.md, section 1)

@available(macOS 11.0, *)
open class VZSocketDeviceConfiguration: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 11.0, *)
open class VZVirtioSocketDeviceConfiguration: VZSocketDeviceConfiguration {
    public init() { fatalError() }
}

@available(macOS 11.0, *)
open class VZSocketDevice: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 11.0, *)
open class VZVirtioSocketDevice: VZSocketDevice {
    open func setSocketListener(_ listener: VZVirtioSocketListener, forPort port: UInt32) { fatalError() }
    open func removeSocketListener(forPort port: UInt32) { fatalError() }
    open func connect(toPort port: UInt32, completionHandler: @escaping (Result<VZVirtioSocketConnection, any Error>) -> Void) { fatalError() }
}

@available(macOS 11.0, *)
open class VZVirtioSocketListener: NSObject {
    public override init() { fatalError() }
    weak open var delegate: (any VZVirtioSocketListenerDelegate)?
}

@available(macOS 11.0, *)
public protocol VZVirtioSocketListenerDelegate: NSObjectProtocol {
    func listener(_ listener: VZVirtioSocketListener, shouldAcceptNewConnection connection: VZVirtioSocketConnection, from socketDevice: VZVirtioSocketDevice) -> Bool
}

#if !VMZ_STUB_NO_DEFAULTS
// Stands in for `@objc optional` (unimplemented: every connection refused).
@available(macOS 11.0, *)
extension VZVirtioSocketListenerDelegate {
    public func listener(_ listener: VZVirtioSocketListener, shouldAcceptNewConnection connection: VZVirtioSocketConnection, from socketDevice: VZVirtioSocketDevice) -> Bool { false }
}
#endif

@available(macOS 11.0, *)
open class VZVirtioSocketConnection: NSObject {
    internal init(stubBase: Void) { fatalError() }
    open var destinationPort: UInt32 { fatalError() }
    open var sourcePort: UInt32 { fatalError() }
    open var fileDescriptor: Int32 { fatalError() }
    open func close() { fatalError() }
}

// MARK: - Network

@available(macOS 11.0, *)
open class VZNetworkDeviceConfiguration: NSObject {
    internal init(stubBase: Void) { fatalError() }
    open var attachment: VZNetworkDeviceAttachment? { get { fatalError() } set { fatalError() } }
    open var macAddress: VZMACAddress { get { fatalError() } set { fatalError() } }
}

@available(macOS 11.0, *)
open class VZVirtioNetworkDeviceConfiguration: VZNetworkDeviceConfiguration {
    public init() { fatalError() }
}

@available(macOS 11.0, *)
open class VZNetworkDeviceAttachment: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 11.0, *)
open class VZNATNetworkDeviceAttachment: VZNetworkDeviceAttachment {
    public init() { fatalError() }
}

@available(macOS 11.0, *)
open class VZFileHandleNetworkDeviceAttachment: VZNetworkDeviceAttachment {
    public init(fileHandle: FileHandle) { fatalError() }
    open var fileHandle: FileHandle { fatalError() }
}

@available(macOS 11.0, *)
open class VZMACAddress: NSObject {
    public init?(string: String) { fatalError() }
    open var string: String { fatalError() }
}

// MARK: - Entropy

@available(macOS 11.0, *)
open class VZEntropyDeviceConfiguration: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 11.0, *)
open class VZVirtioEntropyDeviceConfiguration: VZEntropyDeviceConfiguration {
    public init() { fatalError() }
}

// MARK: - Storage

@available(macOS 11.0, *)
open class VZStorageDeviceConfiguration: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 11.0, *)
open class VZVirtioBlockDeviceConfiguration: VZStorageDeviceConfiguration {
    public init(attachment: VZStorageDeviceAttachment) { fatalError() }
    @available(macOS 12.3, *)
    open var blockDeviceIdentifier: String { get { fatalError() } set { fatalError() } }
    @available(macOS 12.3, *)
    open class func validateBlockDeviceIdentifier(_ blockDeviceIdentifier: String) throws { fatalError() }
}

@available(macOS 11.0, *)
open class VZStorageDeviceAttachment: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 12.0, *)
public enum VZDiskImageCachingMode: Int, @unchecked Sendable {
    case automatic = 0
    case uncached = 1
    case cached = 2
}

@available(macOS 12.0, *)
public enum VZDiskImageSynchronizationMode: Int, @unchecked Sendable {
    case full = 1
    case fsync = 2
    case none = 3
}

@available(macOS 14.0, *)
public enum VZDiskSynchronizationMode: Int, @unchecked Sendable {
    case full = 0
    case none = 1
}

@available(macOS 11.0, *)
open class VZDiskImageStorageDeviceAttachment: VZStorageDeviceAttachment {
    @available(macOS 12.0, *)
    public init(
        url: URL, readOnly: Bool, cachingMode: VZDiskImageCachingMode,
        synchronizationMode: VZDiskImageSynchronizationMode
    ) throws { fatalError() }
}

@available(macOS 14.0, *)
open class VZDiskBlockDeviceStorageDeviceAttachment: VZStorageDeviceAttachment {
    public init(fileHandle: FileHandle, readOnly: Bool, synchronizationMode: VZDiskSynchronizationMode) throws {
        fatalError()
    }
}

// MARK: - Directory sharing

@available(macOS 12.0, *)
open class VZDirectorySharingDeviceConfiguration: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 12.0, *)
open class VZVirtioFileSystemDeviceConfiguration: VZDirectorySharingDeviceConfiguration {
    public init(tag: String) { fatalError() }
    open var share: VZDirectoryShare? { get { fatalError() } set { fatalError() } }
    open class func validateTag(_ tag: String) throws { fatalError() }
}

@available(macOS 12.0, *)
open class VZDirectoryShare: NSObject {
    internal init(stubBase: Void) { fatalError() }
}

@available(macOS 12.0, *)
open class VZSingleDirectoryShare: VZDirectoryShare {
    public init(directory: VZSharedDirectory) { fatalError() }
}

@available(macOS 12.0, *)
open class VZMultipleDirectoryShare: VZDirectoryShare {
    public convenience init() { fatalError() }
    public init(directories: [String: VZSharedDirectory]) { fatalError() }
    open var directories: [String: VZSharedDirectory] { fatalError() }
    open class func validateName(_ name: String) throws { fatalError() }
    open class func canonicalizedName(from name: String) -> String? { fatalError() }
}

@available(macOS 12.0, *)
open class VZSharedDirectory: NSObject {
    public init(url: URL, readOnly: Bool) { fatalError() }
}

// MARK: - Virtual machine

@available(macOS 12.0, *)
open class VZNetworkDevice: NSObject {
    internal init(stubBase: Void) { fatalError() }
    open var attachment: VZNetworkDeviceAttachment? { get { fatalError() } set { fatalError() } }
}

@available(macOS 11.0, *)
open class VZVirtualMachine: NSObject {
    public init(configuration: VZVirtualMachineConfiguration, queue: DispatchQueue) { fatalError() }

    open class var isSupported: Bool { fatalError() }
    weak open var delegate: (any VZVirtualMachineDelegate)?
    @available(macOS 12.0, *)
    open var canStop: Bool { fatalError() }
    open var canPause: Bool { fatalError() }
    open var canResume: Bool { fatalError() }
    @available(macOS 12.0, *)
    open var networkDevices: [VZNetworkDevice] { fatalError() }

    open func start(completionHandler: @escaping (Result<Void, any Error>) -> Void) { fatalError() }
    @available(macOS 12.0, *)
    open func stop(completionHandler: @escaping ((any Error)?) -> Void) { fatalError() }
    open func requestStop() throws { fatalError() }
    open var socketDevices: [VZSocketDevice] { fatalError() }
    open func pause(completionHandler: @escaping (Result<Void, any Error>) -> Void) { fatalError() }
    open func resume(completionHandler: @escaping (Result<Void, any Error>) -> Void) { fatalError() }
    open var memoryBalloonDevices: [VZMemoryBalloonDevice] { fatalError() }
}

@available(macOS 11.0, *)
public protocol VZVirtualMachineDelegate: NSObjectProtocol {
    func guestDidStop(_ virtualMachine: VZVirtualMachine)
    func virtualMachine(_ virtualMachine: VZVirtualMachine, didStopWithError error: any Error)
    @available(macOS 12.0, *)
    func virtualMachine(
        _ virtualMachine: VZVirtualMachine, networkDevice: VZNetworkDevice,
        attachmentWasDisconnectedWithError error: any Error)
}

#if !VMZ_STUB_NO_DEFAULTS
// Stands in for `@objc optional`.
@available(macOS 11.0, *)
extension VZVirtualMachineDelegate {
    public func guestDidStop(_ virtualMachine: VZVirtualMachine) {}
    public func virtualMachine(_ virtualMachine: VZVirtualMachine, didStopWithError error: any Error) {}
    @available(macOS 12.0, *)
    public func virtualMachine(
        _ virtualMachine: VZVirtualMachine, networkDevice: VZNetworkDevice,
        attachmentWasDisconnectedWithError error: any Error) {}
}
#endif
