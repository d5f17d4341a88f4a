#!/usr/bin/env bash
# Provision the ONNX Runtime shared library that rekap loads at run time (ort `load-dynamic`).
#
# Downloads the official onnxruntime==1.32.0 wheel from PyPI with pip, verified against the
# sha256 list in scripts/onnxruntime-requirements.txt, and extracts
# onnxruntime/capi/libonnxruntime.so.1.32.0 into .onnxruntime/ at the repository root (git-ignored).
# Idempotent: returns at once when the library is already there.
#
# Environment: PYTHON (default python3) is the interpreter whose pip is used. The wheel is chosen
# for this machine's CPU (x86_64 or aarch64) and a fixed CPython tag, so any local Python version
# works: only the C library inside the wheel is used, never the Python extension.
set -euo pipefail

VERSION=1.32.0
LIB="libonnxruntime.so.${VERSION}"
# Any CPython tag listed in the requirements file works; the C library is the same in each.
WHEEL_PY=3.12

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${ROOT}/.onnxruntime"
REQS="${ROOT}/scripts/onnxruntime-requirements.txt"
PYTHON="${PYTHON:-python3}"

if [[ -s "${DEST}/${LIB}" ]]; then
    echo "fetch-onnxruntime: ${DEST}/${LIB} already present"
    exit 0
fi

case "$(uname -m)" in
    x86_64 | amd64) PLATFORM=manylinux_2_28_x86_64 ;;
    aarch64 | arm64) PLATFORM=manylinux_2_28_aarch64 ;;
    *)
        echo "fetch-onnxruntime: unsupported CPU '$(uname -m)'; install ONNX Runtime ${VERSION}" >&2
        echo "  yourself and set ORT_DYLIB_PATH to its libonnxruntime.so" >&2
        exit 1
        ;;
esac

if ! command -v "${PYTHON}" >/dev/null 2>&1; then
    echo "fetch-onnxruntime: '${PYTHON}' not found; set PYTHON to a Python 3 with pip" >&2
    exit 1
fi

if ! "${PYTHON}" -m pip --version >/dev/null 2>&1; then
    echo "fetch-onnxruntime: '${PYTHON} -m pip' is not available; install pip (e.g. apt-get install" >&2
    echo "  python3-pip) or set PYTHON to a Python 3 that has it" >&2
    exit 1
fi

TMP="$(mktemp -d)"
trap 'rm -rf "${TMP}"' EXIT

echo "fetch-onnxruntime: downloading onnxruntime==${VERSION} (${PLATFORM}) with pip, sha256-pinned"
PIP_DISABLE_PIP_VERSION_CHECK=1 "${PYTHON}" -m pip download --quiet --no-deps \
    --only-binary=:all: --require-hashes \
    --python-version "${WHEEL_PY}" --platform "${PLATFORM}" \
    -d "${TMP}/wheel" -r "${REQS}"

shopt -s nullglob
WHEELS=("${TMP}"/wheel/onnxruntime-"${VERSION}"-*.whl)
if [[ ${#WHEELS[@]} -ne 1 ]]; then
    echo "fetch-onnxruntime: expected one onnxruntime wheel, got ${#WHEELS[@]}" >&2
    exit 1
fi

mkdir -p "${DEST}"
# Extract to a temporary name in DEST, then rename: a crash never leaves a half-written library
# that the fast path above would accept.
"${PYTHON}" - "${WHEELS[0]}" "${DEST}/${LIB}.part" "onnxruntime/capi/${LIB}" <<'PY'
import shutil, sys, zipfile
wheel, out, member = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
mv "${DEST}/${LIB}.part" "${DEST}/${LIB}"
echo "$(basename "${WHEELS[0]}")" > "${DEST}/SOURCE"
echo "fetch-onnxruntime: installed ${DEST}/${LIB}"
