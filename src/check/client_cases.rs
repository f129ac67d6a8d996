//! Client cases: the checker plays the servent (and the answering servents).

use super::Case;

pub fn cases() -> Vec<Case> {
    Vec::new()
}
