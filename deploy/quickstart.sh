#!/bin/sh
# deploy/quickstart.sh: from a fresh Debian 12 checkout to a running daemon, in one command:
# installs what is missing (deploy/deps.sh), builds a release orthod in build-quickstart/,
# and runs `orthod serve` in the foreground (Ctrl-C drains and exits).
#   deploy/quickstart.sh                          serves ../shared/models/stories260K.gguf
#   deploy/quickstart.sh --model /path/to/x.gguf  serves any GGUF file
#   deploy/quickstart.sh --port 9000 --host 0.0.0.0 --api-key-file keys.txt ...
# Every other argument goes to `orthod serve` (see `orthod serve --help`).
set -eu
cd "$(dirname "$0")/.."

./deploy/deps.sh
if [ -d /usr/local/cuda/bin ]; then
    PATH="/usr/local/cuda/bin:$PATH"
    export PATH
fi

BUILD=build-quickstart
if [ -f "$BUILD/build.ninja" ]; then
    meson setup --reconfigure "$BUILD" --buildtype=release -Dserver=enabled >/dev/null
else
    meson setup "$BUILD" --buildtype=release -Dserver=enabled
fi
# the binary, and the CUDA backend module when CUDA was found (orthod loads it for --device cuda)
targets=server/orthod
if ninja -C "$BUILD" -t targets all | grep -q '^server/liborthod_cuda\.so:'; then
    targets="$targets server/liborthod_cuda.so"
fi
# shellcheck disable=SC2086  # two words
ninja -C "$BUILD" $targets

has_model=no
for a in "$@"; do
    case "$a" in
    --model | --model=* | --config | --config=*) has_model=yes ;;
    esac
done
if [ "$has_model" = no ]; then
    set -- --model "${ORTHOD_SHARED:-../shared}/models/stories260K.gguf" "$@"
fi
echo "deploy/quickstart.sh: orthod serve $*" >&2
exec "./$BUILD/server/orthod" serve "$@"
