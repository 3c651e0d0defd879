#!/bin/sh
# Build the UKVA test initramfs: static i386 busybox + the test programs + init.sh as /init.
# Needs gcc-multilib and busybox-static:i386 (or a static i386 busybox given as $BUSYBOX).
# Usage: build-initrd.sh OUT.cpio.gz
#   boot: qemu-system-x86_64 -accel tcg -cpu Nehalem -m 8G -smp 2 -nodefaults -display none \
#         -no-reboot -kernel bzImage -initrd OUT.cpio.gz -serial file:LOG \
#         -append "console=ttyS0 panic=-1 norandmaps ukvatest=measure,func,pages"
#   ukvatest= any of measure, func, pages, stress, timing, oom (comma separated);
#   default measure,func,pages,stress. timing wants -icount shift=0,sleep=off -smp 1,
#   oom wants mem=1200M.
set -e
out=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
bb=${BUSYBOX:-/bin/busybox}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir -p "$d/bin" "$d/t" "$d/dev" "$d/proc" "$d/sys" "$d/tmp"
cp "$bb" "$d/bin/busybox"
for p in faultloop faultread forkloop execloop mremaptest pagemap ukvaread thptest threadstress hog; do
	gcc -m32 -static -O2 -o "$d/t/$p" "$here/$p.c" -lpthread
done
cp "$here/init.sh" "$d/init"
chmod +x "$d/init"
mknod "$d/dev/console" c 5 1
(cd "$d" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$out"
