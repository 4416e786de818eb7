#!/bin/sh
# /init of vmz's test guest (busybox). Loads the console's modules, opens
# the console named by the last console= option (hvc0 by default, or
# ttyS0), prints VMZ-GUEST-USERSPACE there (the benchmarks' "boot to
# userspace"), loads the other modules, sets up the power button,
# prints the marker VMZ-GUEST-READY, answers lines read from the serial
# console, and powers off on request or on the ACPI power button.
# Commands (one per line):
#   poweroff            power off now
#   panic               crash the kernel (sysrq c)
#   cmdline             print the kernel command line, in brackets
#   ignore-powerbutton  from now on, ignore the ACPI power button
#   net                 configure eth0 by DHCP from QEMU's user network
#   cat-bytes N         print N bytes of 'x', then "vmz-guest: cat done"
#   hwrng N             read N bytes from /dev/hwrng, print how many arrived
#   port NAME           answer lines on the virtio-console port NAME with
#                       "port NAME: <line>" (in the background)
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
        [ "$(cat "$e/device/name" 2>/dev/null)" = "Power Button" ] || continue
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
button=none
wait_for button_node
acpid -f >/dev/null 2>&1 </dev/null &
acpid_pid=$!
wait_for acpid_has_button

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
        echo c >/proc/sysrq-trigger ;;
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
    cat-bytes\ *)
        head -c "${line#cat-bytes }" /dev/zero | tr '\0' x
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
    *)
        echo "echo: $line" ;;
    esac
done
# Input closed: keep running, quietly.
while :; do sleep 3600; done
