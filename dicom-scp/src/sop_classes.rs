//! Which abstract syntaxes the archive accepts, decided by the standard dictionary.
//!
//! A storage SOP class is any SOP class of the standard dictionary (retired ones included:
//! old township ultrasound machines still send "Ultrasound Multi-frame Image Storage
//! (Retired)") whose name says "Storage", except the few that are not objects to archive
//! (Storage Commitment, the DICOMDIR's Media Storage Directory Storage).

use dicom_core::dictionary::UidDictionary;
use dicom_dictionary_std::{StandardSopClassDictionary, uids};

/// Whether `uid` names a storage SOP class the archive stores.
pub fn is_storage_sop_class(uid: &str) -> bool {
    if uid == uids::MEDIA_STORAGE_DIRECTORY_STORAGE {
        return false;
    }
    match StandardSopClassDictionary.by_uid(uid) {
        Some(entry) => entry.name.contains("Storage") && !entry.name.contains("Storage Commitment"),
        None => false,
    }
}

/// Whether an association may negotiate `uid` as abstract syntax.
pub fn is_supported_abstract_syntax(uid: &str) -> bool {
    uid == uids::VERIFICATION
        || is_storage_sop_class(uid)
        || crate::find::is_find_sop_class(uid)
        || crate::get::is_get_sop_class(uid)
        || crate::moves::is_move_sop_class(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_classes_come_from_the_dictionary() {
        for uid in [
            uids::CT_IMAGE_STORAGE,
            uids::MR_IMAGE_STORAGE,
            uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
            uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
            uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
            uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE,
            uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
            uids::ENCAPSULATED_PDF_STORAGE,
            uids::BASIC_TEXT_SR_STORAGE,
            uids::GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
            uids::KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
            uids::X_RAY_RADIATION_DOSE_SR_STORAGE,
            uids::ENHANCED_CT_IMAGE_STORAGE,
        ] {
            assert!(is_storage_sop_class(uid), "{uid}");
        }
        assert!(!is_storage_sop_class(uids::STORAGE_COMMITMENT_PUSH_MODEL));
        assert!(!is_storage_sop_class(uids::MEDIA_STORAGE_DIRECTORY_STORAGE));
        assert!(!is_storage_sop_class(uids::VERIFICATION));
        assert!(!is_storage_sop_class(
            uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND
        ));
        assert!(!is_storage_sop_class("1.2.3.4"));
        assert!(is_supported_abstract_syntax(uids::VERIFICATION));
    }
}
