#!/bin/sh
# /init of vmz's test guest (busybox). Prints VMZ-GUEST-USERSPACE as its
# first act (the benchmarks' "boot to userspace"), sets up the power button,
# prints the marker VMZ-GUEST-READY, answers lines read from the serial
# console, and powers off on request or on the ACPI power button.
# Commands (one per line):
#   poweroff            power off now
#   panic               crash the kernel (sysrq c)
#   cmdline             print the kernel command line, in brackets
#   ignore-powerbutton  from now on, ignore the ACPI power button
#   net                 configure eth0 by DHCP from QEMU's user network
#   cat-bytes N         print N bytes of 'x', then "vmz-guest: cat done"
#   anything else       answered as "echo: <line>"
/bin/busybox echo "VMZ-GUEST-USERSPACE"
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /etc/acpi/PWRF /var/run /var/log

# Modules, in the order make-guest.sh wrote (dependencies first); the ones
# built into the kernel are not there. pvpanic lets the host see a kernel
# panic as a panic, not a reboot.
while read -r m; do
    insmod "/lib/modules/$m.ko" 2>/dev/null
done </lib/modules/order

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
wait_for() {
    i=0
    while [ $i -lt 250 ] && ! "$@"; do sleep 0.02; i=$((i + 1)); done
}
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

exec </dev/console >/dev/console 2>&1
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
    *)
        echo "echo: $line" ;;
    esac
done
# Input closed: keep running, quietly.
while :; do sleep 3600; done
