#!/usr/bin/env python3
"""Make the committed handwriting sample used by `rekap synth` by default:
the first 100 images of each class (0-9) of MNIST's **t10k** split (never the train split),
in file order, as gzip IDX files:
  testdata/digits/t10k-sample-images-idx3-ubyte.gz, testdata/digits/t10k-sample-labels-idx1-ubyte.gz
Run from the repository root:  python3 scripts/make_digit_sample.py ../shared/data/mnist
MNIST: Yann LeCun, Corinna Cortes, Christopher J.C. Burges (CC BY-SA 3.0)."""
import gzip, os, struct, sys

src = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mnist"
PER_CLASS = 100
imgs = gzip.open(os.path.join(src, "t10k-images-idx3-ubyte.gz")).read()
labs = gzip.open(os.path.join(src, "t10k-labels-idx1-ubyte.gz")).read()
magic, n, rows, cols = struct.unpack(">IIII", imgs[:16])
assert magic == 2051 and rows == 28 and cols == 28
assert struct.unpack(">II", labs[:8]) == (2049, n)
count = [0] * 10
keep = []
for i in range(n):
    lab = labs[8 + i]
    if count[lab] < PER_CLASS:
        count[lab] += 1
        keep.append(i)
os.makedirs("testdata/digits", exist_ok=True)
img_out = struct.pack(">IIII", 2051, len(keep), 28, 28) + b"".join(
    imgs[16 + 784 * i:16 + 784 * (i + 1)] for i in keep)
lab_out = struct.pack(">II", 2049, len(keep)) + bytes(labs[8 + i] for i in keep)
# mtime=0 so the gzip bytes are reproducible
with open("testdata/digits/t10k-sample-images-idx3-ubyte.gz", "wb") as f:
    f.write(gzip.compress(img_out, mtime=0))
with open("testdata/digits/t10k-sample-labels-idx1-ubyte.gz", "wb") as f:
    f.write(gzip.compress(lab_out, mtime=0))
print(f"wrote {len(keep)} digits")
