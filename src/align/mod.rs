//! Stage `align`: identify the page (AprilTag id) and its orientation, and fit the homography
//! from template millimetres to image pixels from the registration marks.

pub mod homography;

pub use homography::Homography;
