//! Stage `segment`: cut every box from the photo through the page homography, remove printed
//! lines and guides, and normalise digits for the model.

pub mod normalize;
