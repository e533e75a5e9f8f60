#!/usr/bin/env bash
# Idempotent set-up for `make demo` / `make test` on Debian 12 (run as root).
# Installs only what is missing, so a second run takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  libguestfs-tools python3-guestfs python3-hivex libhivex-bin linux-image-amd64
  libwin-hivex-perl qemu-utils ntfs-3g cabextract gcab xorriso partclone pigz zstd wine64
  libvirt-clients libxml2-utils file python3-venv genisoimage util-linux parted
  lzop lzip lz4 gdisk mount
  python3-libnbd libnbd-bin nbdkit qemu-system-common
  nbdkit-plugin-python openssh-client openssh-server
  python3-yaml
  python3-libvirt libvirt-daemon-system libvirt-daemon qemu-system-x86 ovmf
  netcat-openbsd
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# The libguestfs and hivex bindings are Debian's: the venv must see system site-packages.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import guestfs, hivex" 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.p2vimage-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # (grep drops pip's notes about this machine's optional local package mirrors)
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | { grep -v "^WARNING: Location 'file://" || true; } >&2
  test "${PIPESTATUS[0]}" -eq 0
  touch "$stamp"
fi
