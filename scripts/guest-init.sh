#!/bin/sh
# /init of vmz's test guest (busybox). Loads the console's modules, opens
# the console named by the last console= option (hvc0 by default, or
# ttyS0), prints VMZ-GUEST-USERSPACE there (the benchmarks' "boot to
# userspace"), loads the other modules, sets up the power button,
# prints the marker VMZ-GUEST-READY, answers lines read from the serial
# console, and powers off on request or on the power button (ACPI on
# x86_64, the device tree's GPIO power key on arm64).
# Commands (one per line):
#   poweroff            power off now
#   panic               crash the kernel (sysrq c)
#   reboot              reboot now
#   cpu-burn            keep a CPU busy (a shell loop in the background)
#   cmdline             print the kernel command line, in brackets
#   ignore-powerbutton  from now on, ignore the ACPI power button
#   net                 configure eth0 by DHCP from QEMU's user network
#   make-bytes N        write N bytes of 'x' to /tmp/bytes-N (untimed, so
#                       that cat-bytes then times the console alone):
#                       "vmz-guest: make-bytes done"
#   cat-bytes N         print N bytes of 'x' (from /tmp/bytes-N if made),
#                       then "vmz-guest: cat done"
#   hwrng N             read N bytes from /dev/hwrng, print how many arrived
#   port NAME           answer lines on the virtio-console port NAME with
#                       "port NAME: <line>" (in the background)
#   disks               one line per virtio disk, in order:
#                       "vmz-guest: disk vda ro=0 size=<sectors> serial=<s>",
#                       then "vmz-guest: disks done"
#   disk-write DEV TEXT write TEXT at the start of /dev/DEV and flush it:
#                       "vmz-guest: disk-write DEV ok" (or "failed: why")
#   disk-read DEV N     "vmz-guest: disk-read DEV [<its first N bytes>]"
#   share-mount TAG     mount -t virtiofs TAG /mnt/TAG:
#                       "vmz-guest: share-mount TAG ok" (or "failed: why")
#   share-write TAG FILE TEXT  write TEXT to /mnt/TAG/FILE and sync:
#                       "vmz-guest: share-write TAG/FILE ok" (or "failed: why")
#   share-read TAG FILE "vmz-guest: share-read TAG/FILE [<content>]"
#                       (or "failed: why")
#   run COMMAND         run a shell command, its output on the console, then
#                       "vmz-guest: run done rc=<status>"
#   vsock-listen PORT MODE [N]   serve vsock PORT in the background
#                       (MODE echo, sink or source N: scripts/guest-vsock.c)
#   vsock-connect PORT TEXT      connect to the host's vsock PORT, send TEXT,
#                       print the reply
#   disk-bench ARGS...  run the disk and share benchmark tool
#                       (scripts/guest-disk-bench.c: "vmz-bench: ..." lines),
#                       then "vmz-guest: disk-bench done rc=<status>"
#   drop-caches         sync, drop the guest's page cache:
#                       "vmz-guest: caches dropped"
#   udp-echo PORT       echo UDP datagrams on PORT ("echo:" prefixed) in the
#                       background, after "vmz-guest: udp echo on PORT"
#                       (scripts/guest-udp-echo.c)
#   anything else       answered as "echo: <line>"
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs dev /dev
# The kernel could not open a console that a module provides (hvc0): until
# the console is open below, descriptors 0-2 are /dev/null, so that no file
# opened meanwhile becomes one of them.
exec </dev/null >/dev/null 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
mkdir -p /tmp /etc/acpi/PWRF /var/run /var/log

wait_for() { # COMMAND...: poll up to ~5 s
    i=0
    while [ $i -lt 250 ] && ! "$@"; do sleep 0.02; i=$((i + 1)); done
}
# Modules, in the order make-guest.sh wrote (dependencies first); the ones
# built into the kernel are not there. The console's come first (early).
load_modules() { # LIST
    while read -r m; do
        [ -e "/sys/module/$m" ] || insmod "/lib/modules/$m.ko" 2>/dev/null
    done <"$1"
}
load_modules /lib/modules/early
console=console
for arg in $(cat /proc/cmdline); do
    case "$arg" in console=*) console=${arg#console=}; console=${console%%,*} ;; esac
done
wait_for test -c "/dev/$console"
# The device node comes before the kernel registers it as the console:
# until then /dev/console does not open (and a failed exec redirection
# would end init, and panic the kernel).
console_opens() { (: <>/dev/console) 2>/dev/null; }
wait_for console_opens
# init keeps the console open for good: hvc0 resets its settings (echo,
# \n -> \r\n) when its last user closes it.
exec </dev/console >/dev/console 2>&1
echo "VMZ-GUEST-USERSPACE"
# pvpanic lets the host see a kernel panic as a panic, not a reboot.
load_modules /lib/modules/order

# The ACPI power button (QMP system_powerdown) powers off, unless a test
# asked this guest to ignore it.
cat >/etc/acpi/PWRF/00000080 <<'HANDLER'
#!/bin/sh
if [ -e /tmp/ignore-powerbutton ]; then
    echo "vmz-guest: power button ignored" >/dev/console
else
    echo "vmz-guest: power button" >/dev/console
    poweroff -f
fi
HANDLER
chmod +x /etc/acpi/PWRF/00000080
# The marker below promises a guest that honours the power button: wait (at
# most ~5 s each) for the button's event device, then for acpid to open it.
button_node() {
    for e in /sys/class/input/event*; do
        case "$(cat "$e/device/name" 2>/dev/null)" in "Power Button" | gpio-keys) ;; *) continue ;; esac
        button=/dev/input/${e##*/}
        [ -e "$button" ] && return 0
    done
    return 1
}
acpid_has_button() {
    for fd in /proc/"$acpid_pid"/fd/*; do
        [ "$(readlink "$fd")" = "$button" ] && return 0
    done
    return 1
}
# arm64 (QEMU's virt machine): the power key is a GPIO line, described in
# the device tree's gpio-keys node. Kernels with the gpio-keys driver turn
# it into an input device; Debian's cloud kernel has no such driver, so the
# line is watched here, with the same handler.
watch_power_gpio() {
    pin=$(od -An -tu1 -j7 -N1 /proc/device-tree/gpio-keys/poweroff/gpios) # <&chip PIN flags>
    for c in /sys/class/gpio/gpiochip*; do
        case "$(cat "$c/label")" in *.pl061) gpio=$(($(cat "$c/base") + pin)) ;; esac
    done
    echo "$gpio" >/sys/class/gpio/export
    while :; do
        read -r v <"/sys/class/gpio/gpio$gpio/value"
        if [ "$v" = 1 ]; then
            /etc/acpi/PWRF/00000080
            while read -r v <"/sys/class/gpio/gpio$gpio/value" && [ "$v" = 1 ]; do sleep 0.05; done
        fi
        sleep 0.05
    done
}
button=none
if [ -d /proc/device-tree/gpio-keys/poweroff ] && [ ! -d /sys/bus/platform/drivers/gpio-keys ]; then
    watch_power_gpio </dev/null >/dev/null 2>&1 &
else
    wait_for button_node
    acpid -f >/dev/null 2>&1 </dev/null &
    acpid_pid=$!
    wait_for acpid_has_button
fi

# A kernel without a pvpanic driver (Debian's arm64 kernels have none) tells
# the host of its panic here, the way the driver's panic notifier would: it
# writes PVPANIC_PANICKED to QEMU's pvpanic-pci device (1b36:0011), then
# crashes.
pvpanic_by_hand() {
    [ -d /sys/module/pvpanic ] && return
    for d in /sys/bus/pci/devices/*; do
        [ "$(cat "$d/vendor"):$(cat "$d/device")" = 0x1b36:0x0011 ] || continue
        echo 1 >"$d/enable"
        devmem "$(head -n1 "$d/resource" | cut -d' ' -f1)" 8 1
    done
}

# From here on the console carries the host's protocol: keep routine kernel
# messages off it (a panic's are still printed).
dmesg -n 1
# The host sees only the guest's answers, not its own input echoed back.
stty -echo
echo "VMZ-GUEST-READY"
while IFS= read -r line; do
    case "$line" in
    poweroff)
        echo "vmz-guest: powering off"
        poweroff -f ;;
    panic)
        pvpanic_by_hand
        echo c >/proc/sysrq-trigger ;;
    reboot)
        echo "vmz-guest: rebooting"
        reboot -f ;;
    cpu-burn)
        (while :; do :; done) &
        echo "vmz-guest: burning" ;;
    cmdline)
        echo "vmz-guest: cmdline [$(cat /proc/cmdline)]" ;;
    ignore-powerbutton)
        : >/tmp/ignore-powerbutton
        echo "vmz-guest: ignoring power button" ;;
    net)
        ip link set lo up
        if ip link set eth0 up && udhcpc -q -n -t 5 -i eth0 -s /bin/udhcpc-script >/dev/null 2>&1; then
            echo "vmz-guest: net $(ip -4 -o addr show eth0 | awk '{print $4}')"
        else
            echo "vmz-guest: net failed"
        fi ;;
    make-bytes\ *)
        n=${line#make-bytes }
        head -c "$n" /dev/zero | tr '\0' x >"/tmp/bytes-$n"
        echo "vmz-guest: make-bytes done" ;;
    cat-bytes\ *)
        # Generating the bytes costs the emulated CPU as much as printing
        # them (about 13 MB/s against 11 on hvc0): cat a file made before.
        n=${line#cat-bytes }
        if [ -e "/tmp/bytes-$n" ]; then
            cat "/tmp/bytes-$n"
        else
            head -c "$n" /dev/zero | tr '\0' x
        fi
        echo
        echo "vmz-guest: cat done" ;;
    hwrng\ *)
        n=$(head -c "${line#hwrng }" /dev/hwrng 2>/dev/null | wc -c)
        echo "vmz-guest: hwrng $n bytes" ;;
    port\ *)
        name=${line#port }
        dev=
        for f in /sys/class/virtio-ports/*/name; do
            [ "$(cat "$f" 2>/dev/null)" = "$name" ] && dev=/dev/$(basename "$(dirname "$f")")
        done
        if [ -n "$dev" ] && [ -c "$dev" ]; then
            # Opened once, read-write: a port has one user at a time.
            (while IFS= read -r l; do echo "port $name: $l"; done) <>"$dev" >&0 2>/dev/null &
            echo "vmz-guest: port $name is $dev"
        else
            echo "vmz-guest: no port $name"
        fi ;;
    disks)
        for b in /sys/block/vd*; do
            [ -e "$b" ] || continue
            echo "vmz-guest: disk ${b##*/} ro=$(cat "$b/ro") size=$(cat "$b/size") serial=$(cat "$b/serial" 2>/dev/null)"
        done
        echo "vmz-guest: disks done" ;;
    disk-write\ *)
        set -- $line
        dev=$2
        text=${line#disk-write "$dev" }
        if why=$(printf '%s' "$text" | dd of="/dev/$dev" conv=notrunc,fsync 2>&1); then
            echo "vmz-guest: disk-write $dev ok"
        else
            echo "vmz-guest: disk-write $dev failed: $(echo "$why" | head -n1)"
        fi ;;
    disk-read\ *)
        set -- $line
        echo "vmz-guest: disk-read $2 [$(head -c "$3" "/dev/$2" | tr '\0' '.')]" ;;
    share-mount\ *)
        tag=${line#share-mount }
        mkdir -p "/mnt/$tag"
        if why=$(mount -t virtiofs "$tag" "/mnt/$tag" 2>&1); then
            echo "vmz-guest: share-mount $tag ok"
        else
            echo "vmz-guest: share-mount $tag failed: $why"
        fi ;;
    share-write\ *)
        set -- $line
        text=${line#share-write "$2" "$3" }
        if why=$( (printf '%s' "$text" >"/mnt/$2/$3" && sync) 2>&1); then
            echo "vmz-guest: share-write $2/$3 ok"
        else
            echo "vmz-guest: share-write $2/$3 failed: $why"
        fi ;;
    share-read\ *)
        set -- $line
        if content=$(cat "/mnt/$2/$3" 2>&1); then
            echo "vmz-guest: share-read $2/$3 [$content]"
        else
            echo "vmz-guest: share-read $2/$3 failed: $content"
        fi ;;
    run\ *)
        sh -c "${line#run }"
        echo "vmz-guest: run done rc=$?" ;;
    vsock-listen\ *)
        # shellcheck disable=SC2086 # PORT MODE [N], split on purpose
        vsock listen ${line#vsock-listen } &
        ;;
    udp-echo\ *)
        # Prints "vmz-guest: udp echo on PORT" once bound, then serves in
        # the background.
        udp-echo "${line#udp-echo }" ;;
    vsock-connect\ *)
        rest=${line#vsock-connect }
        vsock connect "${rest%% *}" "${rest#* }" ;;
    disk-bench\ *)
        # shellcheck disable=SC2086 # the tool's arguments, split on purpose
        disk-bench ${line#disk-bench }
        echo "vmz-guest: disk-bench done rc=$?" ;;
    drop-caches)
        sync
        echo 3 >/proc/sys/vm/drop_caches
        echo "vmz-guest: caches dropped" ;;
    *)
        echo "echo: $line" ;;
    esac
done
# Input closed: keep running, quietly.
while :; do sleep 3600; done
