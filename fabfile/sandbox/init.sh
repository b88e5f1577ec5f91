#!/bin/sh
# PID 1 of a sandbox host, before it becomes the guest's init.
# Runs inside the host's fresh network, mount, PID and UTS namespaces
# (ip netns exec NS unshare --mount --pid --uts --fork), with this machine's
# tools: mounts the overlay root, the pseudo filesystems and the seed, then
# pivots into the guest and execs tini, which runs the guest's boot script.
set -eu
hostdir=$1 image=$2 hostname=$3
root=$hostdir/merged

mount -t overlay overlay -o "lowerdir=$image,upperdir=$hostdir/upper,workdir=$hostdir/work" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t tmpfs -o mode=755,nosuid,size=65536k tmpfs "$root/dev"
for spec in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
    IFS=: read -r name major minor <<EOT
$spec
EOT
    mknod -m 666 "$root/dev/$name" c "$major" "$minor"
done
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$root/run"
mkdir -p "$root/run/whipup"
cp "$hostdir"/seed/* "$root/run/whipup/"
hostname "$hostname"

cd "$root"
mkdir -p .oldroot
pivot_root . .oldroot
exec /usr/bin/tini -s -- /usr/bin/python3 /run/whipup/boot.py
