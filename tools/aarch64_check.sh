#!/usr/bin/env bash
# The Raspberry Pi path, proven on aarch64 under qemu-user emulation (make aarch64-check):
#   an arm64 Debian bookworm userland (Pi OS bookworm's base), `pip install ".[runtime]"` from this working tree,
#   then `edgepack bench` on real .tflite/.onnx/.epk files with real data, accuracies next to x86's.
# Emulated timings are not device timings: only accuracies, versions and the import check are reported.
#
#   tools/aarch64_check.sh OUT_DIR DATA_DIR FILE...        (as root: debootstrap, chroot and binfmt need it)
# Env: ROOTFS (default .arm64-rootfs, git-ignored; built once, ~6-25 min), SUITE (default bookworm).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "aarch64-check: needs root (debootstrap, chroot, binfmt_misc)" >&2; exit 2; }
[ $# -ge 3 ] || { echo "usage: tools/aarch64_check.sh OUT_DIR DATA_DIR FILE..." >&2; exit 2; }
OUT=$(realpath -m "$1"); DATA=$(realpath "$2"); shift 2
ROOTFS=$(realpath -m "${ROOTFS:-.arm64-rootfs}"); SUITE=${SUITE:-bookworm}
t0=$(date +%s)
mkdir -p "$OUT"

if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap binfmt-support
fi
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
  echo "aarch64-check: building the arm64 $SUITE userland in $ROOTFS"
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    "$SUITE" "$ROOTFS" http://deb.debian.org/debian
fi
t1=$(date +%s)

cleanup() { for m in dev sys proc; do umount -l "$ROOTFS/$m" 2>/dev/null || true; done; }
trap cleanup EXIT
mount -t proc proc "$ROOTFS/proc"
mount --rbind /sys "$ROOTFS/sys"          # onnxruntime 1.23 aborts at session start without /sys ("Unknown CPU vendor")
mount --rbind /dev "$ROOTFS/dev"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"

rm -rf "$ROOTFS/edgepack" "$ROOTFS/work" && mkdir -p "$ROOTFS/edgepack" "$ROOTFS/work/files" "$ROOTFS/work/data"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$ROOTFS/edgepack"      # the working tree as tracked
cp -r "$DATA/." "$ROOTFS/work/data/"
names=()
for f in "$@"; do
  dest="$ROOTFS/work/files/$(basename "$(dirname "$f")")-$(basename "$f")"; cp "$f" "$dest"
  [ -f "$f.json" ] && cp "$f.json" "$dest.json"; names+=("/work/files/$(basename "$dest")")
done

# pip inside the userland trusts what the host trusts (a proxy's CA, say) and uses its proxy, if any
net_env=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/host-ca-bundle.crt"
  net_env+=(PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt SSL_CERT_FILE=/etc/ssl/certs/host-ca-bundle.crt)
fi
for v in HTTPS_PROXY https_proxy HTTP_PROXY http_proxy NO_PROXY no_proxy; do [ -n "${!v:-}" ] && net_env+=("$v=${!v}"); done
in_arm() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 "${net_env[@]}" "$@"; }
in_arm uname -m > "$OUT/uname.txt"
[ -x "$ROOTFS/venv/bin/python" ] || in_arm python3 -m venv /venv
in_arm /venv/bin/python -m pip install -q --disable-pip-version-check "/edgepack[runtime]"
t2=$(date +%s)
in_arm /venv/bin/python -m pip freeze > "$OUT/pip-freeze.txt"
in_arm /venv/bin/python -c "import importlib.util as u, platform; bad=[m for m in ('torch','tensorflow','onnx','tf_keras') if u.find_spec(m)]; print(platform.machine(), platform.python_version(), 'heavy packages importable:', bad or 'none'); raise SystemExit(1 if bad else 0)" > "$OUT/imports.txt"
in_arm /venv/bin/edgepack bench "${names[@]}" --data mnist --data-dir /work/data --runs 3 --min-seconds 0 \
  --json /work/arm64.json > "$OUT/bench-arm64.log" 2>&1
cp "$ROOTFS/work/arm64.json" "$OUT/arm64.json"
t3=$(date +%s)
host=(); for n in "${names[@]}"; do host+=("$ROOTFS$n"); done
.venv/bin/edgepack bench "${host[@]}" --data mnist --data-dir "$DATA" --runs 3 --min-seconds 0 --json "$OUT/x86.json" \
  > "$OUT/bench-x86.log" 2>&1
.venv/bin/python tools/aarch64_report.py "$OUT" "$((t1 - t0))" "$((t2 - t1))" "$((t3 - t2))"
