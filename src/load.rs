//! Stage `load`: read a photo file, fingerprint it, and decode it straight to greyscale with its
//! EXIF orientation applied, refusing decompression bombs before any pixel buffer is allocated.

use image::{DynamicImage, GrayImage, ImageDecoder, ImageReader, metadata::Orientation};
use sha2::{Digest, Sha256};
use std::io::Cursor;
use std::path::Path;

/// Largest photo we decode, in pixels. A 12 MP phone photo has 12e6; 64 MP sensors exist, so we
/// allow up to 100 MP and refuse anything bigger as a likely decompression bomb.
pub const MAX_PIXELS: u64 = 100_000_000;
/// Largest single side accepted (also bounds the decoder before it allocates).
pub const MAX_SIDE: u32 = 20_000;
/// Memory the non-JPEG decoders may allocate (RGBA16 of MAX_PIXELS would be far more; greyscale
/// or RGB8 of 100 MP fits).
const MAX_DECODER_ALLOC: u64 = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: empty file (0 bytes)")]
    Empty { path: String },
    /// `what` says what the file is, when its first bytes tell (HEIC, PDF...), and what to do.
    #[error("{path}: {what}; rekap reads JPEG, PNG and WebP photos")]
    UnknownFormat { path: String, what: String },
    #[error(
        "{path}: image of {width}x{height} pixels exceeds the budget of {max} pixels (refused \
         unread, as a possible decompression bomb); a real photo this large comes from a phone's \
         high-resolution mode: retake it at the camera's default (12 MP is plenty) or scale it down"
    )]
    TooLarge {
        path: String,
        width: u32,
        height: u32,
        max: u64,
    },
    #[error("{path}: cannot decode image: {message}")]
    Decode { path: String, message: String },
}

/// A decoded photo: greyscale pixels upright per EXIF, plus its provenance.
#[derive(Debug, Clone)]
pub struct Photo {
    pub gray: GrayImage,
    /// Lower-case hex sha256 of the file's bytes.
    pub sha256: String,
    pub bytes: usize,
    /// EXIF orientation code (1 = none) that was applied.
    pub exif_orientation: u8,
}

/// Pixel buffers kept per thread for the next photo (see [`recycle`]): one is enough, a worker
/// thread reads one photo at a time.
const MAX_SPARE_BUFFERS: usize = 1;
/// Largest buffer kept for reuse (a 16 MP greyscale photo): one odd 100 MP photo must not pin
/// 100 MB in every worker thread for the rest of the batch.
const MAX_RECYCLED_BYTES: usize = 16_000_000;

thread_local! {
    /// Pixel buffers of photos this thread has finished with.
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Hand a photo's pixel buffer back for the next JPEG this thread decodes. A worker that decodes
/// photo after photo then writes each into the same memory instead of a fresh 12 MB buffer that
/// the kernel must fault in, zeroed, every time (and around which the heap fragments: a batch
/// of 120 submissions of 12 MP photos peaked at 151 MB per worker without it).
pub fn recycle(photo: Photo) {
    let buf = photo.gray.into_raw();
    SPARE.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut()
            && s.len() < MAX_SPARE_BUFFERS
            && buf.capacity() <= MAX_RECYCLED_BYTES
        {
            s.push(buf);
        }
    });
}

/// A buffer of exactly `len` bytes, reusing a recycled one when there is one. Its contents are
/// unspecified (the decoder overwrites every byte).
fn take_buffer(len: usize) -> Vec<u8> {
    let spare = SPARE.with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()));
    match spare {
        Some(mut buf) => {
            buf.truncate(len);
            buf.resize(len, 0);
            buf
        }
        None => vec![0; len],
    }
}

/// sha256 of a byte slice as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Jpeg,
    Png,
    WebP,
    /// An image or document format recognised but not decoded here: a description of it and
    /// what to do instead, for the error message.
    Unsupported(&'static str),
}

/// Bytes [`sniff`] needs to tell every kind apart (an ISO-BMFF `ftyp` box's major brand ends at
/// byte 12).
pub const SNIFF_BYTES: usize = 16;

const HEIF_MESSAGE: &str = "an HEIC/HEIF photo (the default of iPhone cameras), which rekap does \
    not decode: share or export it as JPEG (on the iPhone: Settings > Camera > Formats > Most \
    Compatible)";
const AVIF_MESSAGE: &str = "an AVIF image, which rekap does not decode: convert it to JPEG or PNG";
const PDF_MESSAGE: &str = "a PDF document, not a photo: render each page to an image first \
    (for example `pdftoppm -r 200 -png FILE page`)";
const TIFF_MESSAGE: &str = "a TIFF image (a scanner's output?), which rekap does not decode: \
    save it as PNG or JPEG";
const GIF_MESSAGE: &str = "a GIF image, which rekap does not decode: save the page as PNG or JPEG";
const BMP_MESSAGE: &str = "a BMP image, which rekap does not decode: save it as PNG or JPEG";
const UNRECOGNISED: &str = "not an image format rekap recognises";

impl FileKind {
    /// The HTTP content type of the kinds rekap decodes (and serves to reviewers' browsers).
    pub fn content_type(self) -> Option<&'static str> {
        match self {
            FileKind::Jpeg => Some("image/jpeg"),
            FileKind::Png => Some("image/png"),
            FileKind::WebP => Some("image/webp"),
            FileKind::Unsupported(_) => None,
        }
    }
}

/// The kind of file from its first bytes (at least [`SNIFF_BYTES`] of them for every kind to be
/// told); `None` when they match no image or document signature known here.
pub fn sniff(bytes: &[u8]) -> Option<FileKind> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(FileKind::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(FileKind::Png);
    }
    if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Some(FileKind::WebP);
    }
    // ISO base media files (HEIF, AVIF): a box of type `ftyp` first, then the major brand (an
    // AVIF under the generic HEIF brand `mif1` is told as HEIF: the advice is the same).
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return match &bytes[8..12] {
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1" => {
                Some(FileKind::Unsupported(HEIF_MESSAGE))
            }
            b"avif" | b"avis" => Some(FileKind::Unsupported(AVIF_MESSAGE)),
            _ => None,
        };
    }
    if bytes.starts_with(b"%PDF-") {
        return Some(FileKind::Unsupported(PDF_MESSAGE));
    }
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        return Some(FileKind::Unsupported(TIFF_MESSAGE));
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Some(FileKind::Unsupported(GIF_MESSAGE));
    }
    // "BM", then the file size and four reserved bytes that are zero in practice.
    if bytes.len() >= 10 && bytes.starts_with(b"BM") && bytes[6..10] == [0, 0, 0, 0] {
        return Some(FileKind::Unsupported(BMP_MESSAGE));
    }
    None
}

/// Read and decode one photo file.
pub fn load_photo(path: &Path) -> Result<Photo, LoadError> {
    decode_photo(&read_file(path)?, &path.display().to_string())
}

/// A photo file's bytes, with the I/O error named as [`load_photo`] names it.
pub fn read_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Decode photo bytes; `name` is used in errors.
pub fn decode_photo(data: &[u8], name: &str) -> Result<Photo, LoadError> {
    if data.is_empty() {
        return Err(LoadError::Empty {
            path: name.to_string(),
        });
    }
    let (gray, exif_orientation) = match sniff(data) {
        Some(FileKind::Jpeg) => decode_jpeg_gray(data, name)?,
        Some(FileKind::Png) => decode_other_gray(data, name, image::ImageFormat::Png)?,
        Some(FileKind::WebP) => decode_other_gray(data, name, image::ImageFormat::WebP)?,
        other => {
            let what = match other {
                Some(FileKind::Unsupported(what)) => what,
                _ => UNRECOGNISED,
            };
            return Err(LoadError::UnknownFormat {
                path: name.to_string(),
                what: what.to_string(),
            });
        }
    };
    let sha256 = sha256_hex(data);
    Ok(Photo {
        gray,
        sha256,
        bytes: data.len(),
        exif_orientation,
    })
}

fn check_budget(name: &str, width: u32, height: u32) -> Result<(), LoadError> {
    if width == 0 || height == 0 {
        return Err(LoadError::Decode {
            path: name.to_string(),
            message: "image has zero width or height".into(),
        });
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS || width > MAX_SIDE || height > MAX_SIDE {
        return Err(LoadError::TooLarge {
            path: name.to_string(),
            width,
            height,
            max: MAX_PIXELS,
        });
    }
    Ok(())
}

/// JPEG: zune-jpeg decodes the luma plane only (no chroma upsampling or colour conversion), which
/// is most of the decode cost saved for a greyscale pipeline.
fn decode_jpeg_gray(data: &[u8], name: &str) -> Result<(GrayImage, u8), LoadError> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::Luma)
        .set_max_width(MAX_SIDE as usize)
        .set_max_height(MAX_SIDE as usize)
        // Strict: a truncated or corrupt scan is an error, not a silently grey-filled page.
        .set_strict_mode(true);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(data), options);
    let derr = |e: zune_jpeg::errors::DecodeErrors| LoadError::Decode {
        path: name.to_string(),
        message: e.to_string(),
    };
    dec.decode_headers().map_err(derr)?;
    let (w, h) = dec
        .dimensions()
        .map(|(w, h)| (w as u32, h as u32))
        .ok_or_else(|| LoadError::Decode {
            path: name.to_string(),
            message: "missing JPEG frame header".into(),
        })?;
    check_budget(name, w, h)?;
    let orientation = dec
        .exif()
        .and_then(|exif| Orientation::from_exif_chunk(exif))
        .unwrap_or(Orientation::NoTransforms);
    // CMYK and YCCK scans (print and scanner workflows, never phone cameras) have no direct
    // path to grey in the decoder: decode them to RGB and take the luma.
    let pixels = if matches!(
        dec.input_colorspace(),
        Some(ColorSpace::CMYK | ColorSpace::YCCK)
    ) {
        let mut rgb_dec = zune_jpeg::JpegDecoder::new_with_options(
            ZCursor::new(data),
            options.jpeg_set_out_colorspace(ColorSpace::RGB),
        );
        let rgb = rgb_dec.decode().map_err(derr)?;
        rgb.chunks_exact(3).map(luma_bt601).collect()
    } else {
        let len = dec.output_buffer_size().ok_or_else(|| LoadError::Decode {
            path: name.to_string(),
            message: "missing JPEG frame header".into(),
        })?;
        let mut pixels = take_buffer(len);
        dec.decode_into(&mut pixels).map_err(derr)?;
        pixels
    };
    let gray = GrayImage::from_raw(w, h, pixels).ok_or_else(|| LoadError::Decode {
        path: name.to_string(),
        message: "decoded buffer has the wrong size".into(),
    })?;
    Ok(apply_orientation(gray, orientation))
}

/// ITU-R BT.601 luma of an RGB pixel, the Y that a YCbCr JPEG stores (integer weights summing
/// to 256, rounded).
fn luma_bt601(p: &[u8]) -> u8 {
    let y = 77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2]) + 128;
    // Invariant: at most 256 * 255 + 128 before the shift, so the result fits a u8.
    (y >> 8) as u8
}

/// PNG or WebP (`format`, as [`sniff`] told it) through the `image` crate.
fn decode_other_gray(
    data: &[u8],
    name: &str,
    format: image::ImageFormat,
) -> Result<(GrayImage, u8), LoadError> {
    // The size the header claims, read before any pixel and before the decoder's own limits
    // (which refuse a side over MAX_SIDE without saying how large the image claims to be), so
    // a refusal names the claimed size.
    if let Ok((w, h)) = ImageReader::with_format(Cursor::new(data), format).into_dimensions() {
        check_budget(name, w, h)?;
    }
    let mut reader = ImageReader::with_format(Cursor::new(data), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODER_ALLOC);
    reader.limits(limits);
    let derr = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => LoadError::TooLarge {
            path: name.to_string(),
            width: 0,
            height: 0,
            max: MAX_PIXELS,
        },
        other => LoadError::Decode {
            path: name.to_string(),
            message: other.to_string(),
        },
    };
    let mut decoder = reader.into_decoder().map_err(derr)?;
    let (w, h) = decoder.dimensions();
    check_budget(name, w, h)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let img = DynamicImage::from_decoder(decoder).map_err(derr)?;
    Ok(apply_orientation(img.into_luma8(), orientation))
}

fn apply_orientation(gray: GrayImage, orientation: Orientation) -> (GrayImage, u8) {
    let code = orientation.to_exif();
    if orientation == Orientation::NoTransforms {
        return (gray, code);
    }
    let mut dynimg = DynamicImage::ImageLuma8(gray);
    dynimg.apply_orientation(orientation);
    (dynimg.into_luma8(), code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(img: &GrayImage, format: image::ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    fn png_bytes(img: &GrayImage) -> Vec<u8> {
        encoded(img, image::ImageFormat::Png)
    }

    fn jpeg_bytes(img: &GrayImage) -> Vec<u8> {
        encoded(img, image::ImageFormat::Jpeg)
    }

    #[test]
    fn empty_file_is_refused() {
        assert!(matches!(
            decode_photo(&[], "x.jpg"),
            Err(LoadError::Empty { .. })
        ));
    }

    #[test]
    fn garbage_is_unknown_format() {
        let r = decode_photo(b"hello, this is not an image at all", "x.txt");
        assert!(matches!(r, Err(LoadError::UnknownFormat { .. })), "{r:?}");
    }

    /// The first bytes of an HEIC photo as an iPhone writes it: an `ftyp` box, brand `heic`.
    const HEIC_HEAD: &[u8] = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\0meta";

    #[test]
    fn formats_are_told_from_their_first_bytes() {
        let img = GrayImage::from_fn(9, 6, |x, y| image::Luma([(x * 20 + y * 3) as u8]));
        assert_eq!(sniff(&jpeg_bytes(&img)), Some(FileKind::Jpeg));
        assert_eq!(sniff(&png_bytes(&img)), Some(FileKind::Png));
        assert_eq!(
            sniff(&encoded(&img, image::ImageFormat::WebP)),
            Some(FileKind::WebP)
        );
        let webp = encoded(&img, image::ImageFormat::WebP);
        assert_eq!(crate::store::sniff_image_type(&webp), "image/webp");
        assert_eq!(
            crate::store::sniff_image_type(HEIC_HEAD),
            "application/octet-stream",
            "only what rekap decodes is stored as an image to serve"
        );
        assert_eq!(sniff(HEIC_HEAD), Some(FileKind::Unsupported(HEIF_MESSAGE)));
        assert_eq!(
            sniff(b"\0\0\0\x1cftypavif\0\0\0\0avifmif1"),
            Some(FileKind::Unsupported(AVIF_MESSAGE))
        );
        // An MP4 video is an ISO-BMFF file too, but not a photo format named here.
        assert_eq!(sniff(b"\0\0\0\x18ftypisom\0\0\0\0isom"), None);
        assert_eq!(
            sniff(b"%PDF-1.7\n%..."),
            Some(FileKind::Unsupported(PDF_MESSAGE))
        );
        assert_eq!(
            sniff(b"II*\0\x08\0\0\0"),
            Some(FileKind::Unsupported(TIFF_MESSAGE))
        );
        assert_eq!(
            sniff(b"GIF89a\x01\0"),
            Some(FileKind::Unsupported(GIF_MESSAGE))
        );
        assert_eq!(
            sniff(b"BM\x36\x10\x0e\0\0\0\0\0\x36\0"),
            Some(FileKind::Unsupported(BMP_MESSAGE))
        );
        // Text that happens to start like a signature is not taken for one.
        assert_eq!(sniff(b"BMI table of the village"), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn webp_photos_are_decoded() {
        let img = GrayImage::from_fn(40, 30, |x, y| image::Luma([((x * 7 + y * 11) % 256) as u8]));
        let bytes = encoded(&img, image::ImageFormat::WebP);
        let photo = decode_photo(&bytes, "upload.webp").expect("a lossless WebP decodes");
        assert_eq!(photo.gray, img, "lossless WebP keeps every grey level");
        assert_eq!(photo.sha256, sha256_hex(&bytes));
    }

    #[test]
    fn formats_rekap_cannot_read_say_what_they_are_and_what_to_do() {
        let msg = |bytes: &[u8]| match decode_photo(bytes, "p") {
            Err(e @ LoadError::UnknownFormat { .. }) => e.to_string(),
            other => panic!("expected UnknownFormat, got {other:?}"),
        };
        let heic = msg(HEIC_HEAD);
        assert!(heic.contains("HEIC") && heic.contains("JPEG"), "{heic}");
        let pdf = msg(b"%PDF-1.4\n1 0 obj");
        assert!(pdf.contains("PDF") && pdf.contains("pdftoppm"), "{pdf}");
        let tiff = msg(b"MM\0*\0\0\0\x08");
        assert!(tiff.contains("TIFF"), "{tiff}");
        let text = msg(b"hello, this is not an image at all");
        assert!(text.contains("not an image format"), "{text}");
    }

    #[test]
    fn png_roundtrip_keeps_pixels_and_hash() {
        let img = GrayImage::from_fn(7, 5, |x, y| image::Luma([(x * 30 + y) as u8]));
        let bytes = png_bytes(&img);
        let photo = decode_photo(&bytes, "a.png").unwrap();
        assert_eq!(photo.gray, img);
        assert_eq!(photo.sha256, sha256_hex(&bytes));
        assert_eq!(photo.sha256.len(), 64);
    }

    #[test]
    fn jpeg_decodes_to_gray_of_right_size() {
        let img = image::RgbImage::from_fn(40, 30, |x, _| image::Rgb([x as u8 * 5, 100, 200]));
        let mut bytes = Vec::new();
        img.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
            .unwrap();
        let photo = decode_photo(&bytes, "a.jpg").unwrap();
        assert_eq!(photo.gray.dimensions(), (40, 30));
    }

    #[test]
    fn png_bomb_is_refused_before_decoding() {
        // A valid PNG header claiming 30000x30000 pixels with a tiny body.
        let img = GrayImage::new(1, 1);
        let mut bytes = png_bytes(&img);
        // IHDR width/height live at bytes 16..24; patch them (CRC will be wrong, so the decoder
        // must reject on size or on CRC, never allocate 900 MP).
        bytes[16..20].copy_from_slice(&30_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&30_000u32.to_be_bytes());
        let r = decode_photo(&bytes, "bomb.png");
        assert!(r.is_err());
    }

    #[test]
    fn a_bomb_wider_than_the_decoder_allows_is_refused_with_its_claimed_size() {
        // Correct CRCs, so only the size can refuse it; a side over MAX_SIDE trips the
        // decoder's own limit, which does not say how large the image claims to be.
        let side = MAX_SIDE + 1000;
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&side.to_be_bytes());
        ihdr.extend_from_slice(&side.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
        // A few rows of zeros: the body is tiny, the claimed size huge.
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, &vec![0u8; (side as usize + 1) * 4]).unwrap();
        let idat = z.finish().unwrap();
        for (kind, data) in [
            (&b"IHDR"[..], ihdr),
            (&b"IDAT"[..], idat),
            (&b"IEND"[..], Vec::new()),
        ] {
            bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(&data);
            bytes.extend_from_slice(kind);
            bytes.extend_from_slice(&data);
            bytes.extend_from_slice(&crc.sum().to_be_bytes());
        }
        let r = decode_photo(&bytes, "bomb.png");
        match r {
            Err(e @ LoadError::TooLarge { width, height, .. }) => {
                assert_eq!((width, height), (side, side));
                let message = e.to_string();
                assert!(message.contains(&format!("{side}x{side}")), "{message}");
                assert!(message.contains("retake it"), "says what to do: {message}");
            }
            other => panic!("expected TooLarge with the claimed size, got {other:?}"),
        }
    }

    #[test]
    fn exif_orientation_is_applied() {
        // Stored 40 x 30 with a dark block at the top left; EXIF orientation 6 says "turn 90
        // degrees clockwise to display", which puts that block at the top right of a 30 x 40 page.
        let img = GrayImage::from_fn(40, 30, |x, y| {
            image::Luma([if x < 10 && y < 10 { 0 } else { 255 }])
        });
        // APP1: "Exif\0\0", a little-endian TIFF header, one IFD entry 0x0112 (SHORT, 1) = 6.
        let mut exif = b"Exif\0\0II\x2a\0\x08\0\0\0\x01\0".to_vec();
        exif.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
        exif.extend_from_slice(&[0, 0, 0, 0]);
        let mut bytes = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut bytes, 95);
        enc.add_app_segment(1, exif).unwrap();
        enc.encode(img.as_raw(), 40, 30, jpeg_encoder::ColorType::Luma)
            .unwrap();
        let photo = decode_photo(&bytes, "turned.jpg").unwrap();
        assert_eq!(photo.exif_orientation, 6);
        assert_eq!(photo.gray.dimensions(), (30, 40));
        assert!(
            photo.gray.get_pixel(25, 4).0[0] < 60,
            "block at the top right"
        );
        assert!(
            photo.gray.get_pixel(4, 4).0[0] > 200,
            "paper at the top left"
        );
    }

    #[test]
    fn a_cmyk_jpeg_decodes_to_its_grey() {
        // 64 x 48: paper (no ink) with a black square (full K) in the middle.
        let (w, h) = (64u16, 48u16);
        let mut cmyk = Vec::with_capacity(usize::from(w) * usize::from(h) * 4);
        for y in 0..h {
            for x in 0..w {
                let ink = (16..48).contains(&x) && (12..36).contains(&y);
                cmyk.extend_from_slice(&[0, 0, 0, if ink { 255 } else { 0 }]);
            }
        }
        let mut bytes = Vec::new();
        jpeg_encoder::Encoder::new(&mut bytes, 95)
            .encode(&cmyk, w, h, jpeg_encoder::ColorType::Cmyk)
            .unwrap();
        let photo = decode_photo(&bytes, "cmyk.jpg").unwrap();
        assert_eq!(photo.gray.dimensions(), (64, 48));
        let paper = photo.gray.get_pixel(2, 2).0[0];
        let ink = photo.gray.get_pixel(32, 24).0[0];
        assert!(paper > 230 && ink < 30, "paper {paper}, ink {ink}");
    }

    #[test]
    fn truncated_jpeg_is_a_decode_error() {
        let img = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let mut bytes = Vec::new();
        img.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
            .unwrap();
        bytes.truncate(bytes.len() / 3);
        let r = decode_photo(&bytes, "t.jpg");
        assert!(matches!(r, Err(LoadError::Decode { .. })), "{r:?}");
    }

    /// A recycled buffer gives the same pixels as a fresh one, whether the next photo is
    /// smaller or larger (every byte is written by the decoder).
    #[test]
    fn recycled_buffers_decode_the_same_pixels() {
        let make = |w: u32, h: u32, k: u32| {
            GrayImage::from_fn(w, h, |x, y| image::Luma([((x * 7 + y * k) % 251) as u8]))
        };
        let photos = [make(64, 48, 3), make(32, 40, 5), make(80, 96, 11)];
        let fresh: Vec<GrayImage> = std::thread::spawn({
            let photos = photos.clone();
            move || {
                photos
                    .iter()
                    .map(|p| decode_photo(&jpeg_bytes(p), "x.jpg").unwrap().gray)
                    .collect()
            }
        })
        .join()
        .unwrap();
        for (p, want) in photos.iter().zip(&fresh) {
            let got = decode_photo(&jpeg_bytes(p), "x.jpg").unwrap();
            assert_eq!(&got.gray, want);
            // Dirty the buffer so that stale bytes would show.
            let mut dirty = got;
            dirty.gray.iter_mut().for_each(|v| *v = 0xAB);
            recycle(dirty);
        }
        assert!(SPARE.with(|s| s.borrow().len()) <= MAX_SPARE_BUFFERS);
        // A buffer over the limit is not kept.
        SPARE.with(|s| s.borrow_mut().clear());
        recycle(Photo {
            gray: GrayImage::new(4000, 4001),
            sha256: String::new(),
            bytes: 0,
            exif_orientation: 1,
        });
        assert_eq!(SPARE.with(|s| s.borrow().len()), 0);
    }
}
