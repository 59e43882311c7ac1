#!/usr/bin/env bash
# Build an emulated Raspberry Pi userspace: an arm64 Debian root run through qemu-user (binfmt_misc),
# with the aarch64 wheels of numpy, onnxruntime and ai-edge-litert installed by the HOST's pip (nothing runs
# pip under emulation). Usage: device_tests/make_pi_root.sh [ROOT]   (default /var/cache/edge-sdk/rpi-arm64)
# An existing root is reused: the script then only registers qemu-aarch64 with binfmt_misc (lost at reboot).
# Needs root and Debian's mmdebstrap, qemu-user-static, binfmt-support. ~5 min, ~250 MB with the wheels.
set -euo pipefail
root=${1:-/var/cache/edge-sdk/rpi-arm64}
python=${PYTHON:-python3}
[ -d /proc/sys/fs/binfmt_misc ] && [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64
if [ -x "$root/usr/bin/python3" ]; then
  echo "emulated Raspberry Pi root already there: $root (delete it to build it again)"
  exit 0
fi
rm -rf "$root.tmp"
mkdir -p "$(dirname "$root")"  # mmdebstrap needs the parent folder
mmdebstrap --mode=root --arch=arm64 --variant=minbase --include=python3,ca-certificates bookworm "$root.tmp" http://deb.debian.org/debian
# pip picks ai-edge-litert 1.x unless every manylinux tag is listed
"$python" -m pip install -q --target "$root.tmp/usr/local/lib/python3.11/dist-packages" --only-binary=:all: \
  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
  --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_17_aarch64 \
  --platform manylinux2014_aarch64 numpy onnxruntime "ai-edge-litert>=2.0"
# What a Pi 4 shows in /proc and /sys. The root's /proc is a plain folder (nothing is mounted there): an ARM
# cpuinfo (onnxruntime crashes on the host's x86 one) and the device-tree model edge-sdk reads the board from.
mkdir -p "$root.tmp/proc/device-tree" "$root.tmp/sys/devices/system/cpu"
printf 'Raspberry Pi 4 Model B Rev 1.4\0' > "$root.tmp/proc/device-tree/model"
for i in 0 1 2 3; do
  printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n' "$i"
  printf 'CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
done > "$root.tmp/proc/cpuinfo"
printf 'Hardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n' >> "$root.tmp/proc/cpuinfo"
echo 0-3 > "$root.tmp/sys/devices/system/cpu/possible"
echo 0-3 > "$root.tmp/sys/devices/system/cpu/present"
chmod 1777 "$root.tmp/tmp"
mv "$root.tmp" "$root"
echo "emulated Raspberry Pi root ready: $root"
