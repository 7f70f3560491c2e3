#!/usr/bin/env bash
# The data step: leaves the official files of one dataset in data/<dataset>/.
#
#   data/fetch.sh mnist|fashion-mnist|cifar10
#
# It takes the files from the first source that has them:
#   1. files already in data/<dataset>/;
#   2. the local mirror $DATA_MIRROR (default ../shared/datasets, when it exists);
#   3. for Fashion-MNIST, Debian's dataset-fashion-mnist package
#      (/usr/share/datasets/fashion-mnist/, installed with apt-get if possible);
#   4. a download from the dataset's canonical public location.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dataset=${1:-}
mirror=${DATA_MIRROR:-$root/../shared/datasets}
idx_files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"

case "$dataset" in
    mnist)
        files=$idx_files
        mirror_dir=$mirror/mnist
        urls="https://ossci-datasets.s3.amazonaws.com/mnist http://yann.lecun.com/exdb/mnist"
        ;;
    fashion-mnist)
        files=$idx_files
        mirror_dir=$mirror/fashion-mnist
        urls="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
        ;;
    cifar10)
        files="data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin batches.meta.txt"
        mirror_dir=$mirror/cifar-10-batches-bin
        urls="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
        ;;
    *)
        echo "usage: data/fetch.sh mnist|fashion-mnist|cifar10 (got '${dataset}')" >&2
        exit 2
        ;;
esac

dest=$root/data/$dataset
mkdir -p "$dest"

# True if every file is in $1, gzip-compressed or not.
has_all() {
    local f
    for f in $files; do
        [ -s "$1/$f" ] || [ -s "$1/${f%.gz}" ] || return 1
    done
}

copy_from() {
    local f
    for f in $files; do
        if [ -s "$1/$f" ]; then install -m 644 "$1/$f" "$dest/$f"; else install -m 644 "$1/${f%.gz}" "$dest/${f%.gz}"; fi
    done
    echo "data: copied $dataset from $1 to data/$dataset/"
}

fetch() {  # fetch URL FILE
    if command -v curl >/dev/null 2>&1; then
        curl -fL --retry 2 --connect-timeout 20 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        echo "data: neither curl nor wget is installed" >&2
        return 1
    fi
}

if has_all "$dest"; then
    echo "data: $dataset is already in data/$dataset/"
    exit 0
fi

if [ -d "$mirror_dir" ] && has_all "$mirror_dir"; then
    copy_from "$mirror_dir"
    if [ "$dataset" = cifar10 ]; then
        records=0
        for f in data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin; do
            records=$((records + $(stat -c %s "$dest/$f") / 3073))
        done
        if [ "$records" -lt 50000 ]; then
            echo "data: note: this mirror holds a subset of CIFAR-10, $records training images; the full set (50,000) downloads from the canonical site when data/cifar10/ is empty and no mirror is set (DATA_MIRROR=/nonexistent make data DATASET=cifar10)."
        fi
    fi
    exit 0
fi

if [ "$dataset" = fashion-mnist ]; then
    debian=/usr/share/datasets/fashion-mnist
    if ! has_all "$debian" && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "data: installing Debian's dataset-fashion-mnist package"
        apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || true
    fi
    if has_all "$debian"; then
        copy_from "$debian"
        exit 0
    fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for url in $urls; do
    echo "data: downloading $dataset from $url"
    if [ "$dataset" = cifar10 ]; then
        if fetch "$url" "$tmp/cifar.tar.gz" && tar -xzf "$tmp/cifar.tar.gz" -C "$tmp"; then
            copy_from "$tmp/cifar-10-batches-bin"
            exit 0
        fi
    else
        ok=1
        for f in $files; do
            fetch "$url/$f" "$tmp/$f" || { ok=0; break; }
        done
        if [ $ok = 1 ]; then
            copy_from "$tmp"
            exit 0
        fi
    fi
done

cat >&2 <<MSG
data: could not get $dataset from any source:
  - data/$dataset/ does not hold its files
  - no mirror at $mirror_dir (set DATA_MIRROR to a folder laid out like ../shared/datasets)
  - the download failed (no internet?)
Put the official files ($files) in data/$dataset/ by hand, or point DATA_MIRROR at a copy.
MSG
exit 1
