//! Handwritten digit bank read from IDX files (the MNIST format), gzip-compressed or plain.
//!
//! The images file `...-images-idx3-ubyte[.gz]` must have a labels file next to it with the same
//! name where `images-idx3` is replaced by `labels-idx1`. Invariant after [`DigitBank::load`]:
//! every image is 28x28 bytes, every label is 0..=9 and every class has at least one image.

use super::SynthError;
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Side of an MNIST image in pixels.
pub const IDX_SIDE: usize = 28;
const IMAGES_MAGIC: u32 = 2051;
const LABELS_MAGIC: u32 = 2049;

/// Default handwriting sample (committed; made by `scripts/make_digit_sample.py` from MNIST t10k).
pub const DEFAULT_DIGITS_PATH: &str = "testdata/digits/t10k-sample-images-idx3-ubyte.gz";

/// A set of 28x28 grey digit images (0 = paper, 255 = ink), indexed by class.
#[derive(Debug, Clone)]
pub struct DigitBank {
    images: Vec<[u8; IDX_SIDE * IDX_SIDE]>,
    by_class: [Vec<usize>; 10],
}

fn read_all(path: &Path) -> Result<Vec<u8>, SynthError> {
    let raw = std::fs::read(path).map_err(|source| SynthError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|source| SynthError::Io {
                path: path.display().to_string(),
                source,
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The labels file that belongs to an images file (`images-idx3` -> `labels-idx1`).
pub fn labels_path_for(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    if !name.contains("images-idx3") {
        return None;
    }
    Some(images.with_file_name(name.replace("images-idx3", "labels-idx1")))
}

impl DigitBank {
    /// Load an IDX images file and its labels file (see module docs).
    pub fn load(images_path: &Path) -> Result<Self, SynthError> {
        let bad = |message: String| SynthError::Digits {
            path: images_path.display().to_string(),
            message,
        };
        let labels_path = labels_path_for(images_path).ok_or_else(|| {
            bad("the file name must contain `images-idx3` (labels are read from the matching `labels-idx1` file)".into())
        })?;
        let images = read_all(images_path)?;
        let labels = read_all(&labels_path)?;
        if be_u32(&images, 0) != Some(IMAGES_MAGIC) {
            return Err(bad("not an IDX3 images file (bad magic number)".into()));
        }
        if be_u32(&labels, 0) != Some(LABELS_MAGIC) {
            return Err(bad(format!(
                "{} is not an IDX1 labels file (bad magic number)",
                labels_path.display()
            )));
        }
        let n = be_u32(&images, 4).unwrap_or(0) as usize;
        let rows = be_u32(&images, 8).unwrap_or(0) as usize;
        let cols = be_u32(&images, 12).unwrap_or(0) as usize;
        if rows != IDX_SIDE || cols != IDX_SIDE {
            return Err(bad(format!("images are {rows}x{cols}, expected 28x28")));
        }
        if be_u32(&labels, 4).map(|v| v as usize) != Some(n) {
            return Err(bad("image and label counts differ".into()));
        }
        if images.len() < 16 + n * IDX_SIDE * IDX_SIDE || labels.len() < 8 + n {
            return Err(bad("file is truncated".into()));
        }
        let mut bank = DigitBank {
            images: Vec::with_capacity(n),
            by_class: Default::default(),
        };
        for i in 0..n {
            let label = labels[8 + i] as usize;
            if label > 9 {
                return Err(bad(format!("label {label} at index {i} is not a digit")));
            }
            let mut img = [0u8; IDX_SIDE * IDX_SIDE];
            let start = 16 + i * IDX_SIDE * IDX_SIDE;
            img.copy_from_slice(&images[start..start + IDX_SIDE * IDX_SIDE]);
            bank.by_class[label].push(bank.images.len());
            bank.images.push(img);
        }
        if let Some(d) = (0..10).find(|&d| bank.by_class[d].is_empty()) {
            return Err(bad(format!("no image of digit {d}")));
        }
        Ok(bank)
    }

    /// Number of images of digit `d` (0 if `d > 9`).
    pub fn count(&self, d: u8) -> usize {
        self.by_class.get(d as usize).map_or(0, Vec::len)
    }

    /// The `k`-th image (modulo the class size) of digit `d`; `None` only for `d > 9`.
    pub fn get(&self, d: u8, k: usize) -> Option<&[u8; IDX_SIDE * IDX_SIDE]> {
        let class = self.by_class.get(d as usize)?;
        let idx = *class.get(k % class.len().max(1))?;
        self.images.get(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_committed_sample() {
        let bank = DigitBank::load(Path::new(DEFAULT_DIGITS_PATH)).unwrap();
        for d in 0..10u8 {
            assert_eq!(bank.count(d), 100, "digit {d}");
            let img = bank.get(d, 3).unwrap();
            assert!(img.iter().filter(|&&v| v > 128).count() > 20);
        }
        assert!(bank.get(10, 0).is_none());
    }

    #[test]
    fn labels_path_is_derived() {
        let p = labels_path_for(Path::new("a/t10k-images-idx3-ubyte.gz")).unwrap();
        assert_eq!(p, Path::new("a/t10k-labels-idx1-ubyte.gz"));
        assert!(labels_path_for(Path::new("a/foo.gz")).is_none());
    }
}
