#!/bin/sh
# /init of vmz's test guest (busybox). Prints a marker, answers lines read
# from the serial console, and powers off on request or on the ACPI power
# button. Commands (one per line):
#   poweroff            power off now
#   panic               crash the kernel (sysrq c)
#   ignore-powerbutton  from now on, ignore the ACPI power button
#   net                 configure eth0 by DHCP from QEMU's user network
#   cat-bytes N         print N bytes of 'x', then "vmz-guest: cat done"
#   anything else       answered as "echo: <line>"
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /etc/acpi/PWRF /var/run /var/log

# Modules, dependencies first; a missing one is built into the kernel.
# pvpanic lets the host see a kernel panic as a panic, not a reboot.
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev \
    virtio_pci failover net_failover virtio_net button evdev pvpanic pvpanic-mmio; do
    [ -f "/lib/modules/$m.ko" ] && insmod "/lib/modules/$m.ko" 2>/dev/null
done

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
acpid -f >/dev/null 2>&1 </dev/null &
# The marker below promises a guest that honours the power button: wait
# (at most ~5 s) until acpid has opened the input devices.
acpid_pid=$!
i=0
while [ $i -lt 250 ] && ! ls -l "/proc/$acpid_pid/fd" 2>/dev/null | grep -q /dev/input/event; do
    sleep 0.02
    i=$((i + 1))
done

exec </dev/console >/dev/console 2>&1
# The host sees only the guest's answers, not its own input echoed back.
stty -echo
echo "VMZ-GUEST-READY"
while read -r line; do
    case "$line" in
    poweroff)
        echo "vmz-guest: powering off"
        poweroff -f ;;
    panic)
        echo c >/proc/sysrq-trigger ;;
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
