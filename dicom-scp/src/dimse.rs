//! DIMSE command sets (group 0000, always implicit VR little endian, PS3.7 section 6.3.1).
//!
//! dicom-rs has no DIMSE layer, so command sets are encoded and decoded here, by hand: they
//! are small, flat and fixed in encoding, and doing it directly keeps exact control of what
//! goes on the wire.

use dicom_core::Tag;
use dicom_dictionary_std::tags;

/// DIMSE command field values (PS3.7 E.1-1).
pub mod command_field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_STORE_RSP: u16 = 0x8001;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_GET_RSP: u16 = 0x8010;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_FIND_RSP: u16 = 0x8020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_MOVE_RSP: u16 = 0x8021;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_ECHO_RSP: u16 = 0x8030;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
}

/// Command Data Set Type value meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;

/// DIMSE status codes we answer with (PS3.4 B.2.3, PS3.7 C).
pub mod status {
    pub const SUCCESS: u16 = 0x0000;
    /// C-FIND: a match follows; more may come.
    pub const PENDING: u16 = 0xFF00;
    /// Warning: the object was kept but not as sent (used when a different object with a
    /// known SOP Instance UID arrives: the first copy stays current, see the README).
    pub const WARNING_COERCION: u16 = 0xB000;
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// C-FIND, C-GET, C-MOVE: stopped by a C-CANCEL-RQ.
    pub const CANCEL: u16 = 0xFE00;
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
}

/// Largest command set accepted; real ones are a few hundred bytes.
pub const MAX_COMMAND_LEN: usize = 64 * 1024;

/// A decoded command set: the fields a storage SCP needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    pub command_field: u16,
    pub message_id: u16,
    pub affected_sop_class_uid: Option<String>,
    pub affected_sop_instance_uid: Option<String>,
    pub data_set_type: u16,
    pub priority: Option<u16>,
    /// The status of a response.
    pub status: Option<u16>,
    /// C-MOVE: where to send the instances.
    pub move_destination: Option<String>,
}

impl Command {
    pub fn has_data_set(&self) -> bool {
        self.data_set_type != NO_DATA_SET
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("command set is truncated")]
    Truncated,
    #[error("command set is larger than {MAX_COMMAND_LEN} bytes")]
    TooLarge,
    #[error("command set lacks {0}")]
    Missing(&'static str),
    #[error("command set element {0} has a bad length")]
    BadLength(Tag),
}

/// Decodes a command set.
pub fn decode(bytes: &[u8]) -> Result<Command, CommandError> {
    if bytes.len() > MAX_COMMAND_LEN {
        return Err(CommandError::TooLarge);
    }
    let mut cmd = Command::default();
    let (mut have_field, mut have_id, mut have_type) = (false, false, false);
    let mut pos = 0;
    while pos < bytes.len() {
        if bytes.len() - pos < 8 {
            return Err(CommandError::Truncated);
        }
        let group = u16::from_le_bytes([bytes[pos], bytes[pos + 1]]);
        let element = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        pos += 8;
        if len > bytes.len() - pos {
            return Err(CommandError::Truncated);
        }
        let value = &bytes[pos..pos + len];
        pos += len;
        let tag = Tag(group, element);
        let us = || -> Result<u16, CommandError> {
            if value.len() != 2 {
                return Err(CommandError::BadLength(tag));
            }
            Ok(u16::from_le_bytes([value[0], value[1]]))
        };
        let text = || {
            String::from_utf8_lossy(value)
                .trim_end_matches(['\0', ' '])
                .trim_start()
                .to_owned()
        };
        match tag {
            t if t == tags::COMMAND_FIELD => {
                cmd.command_field = us()?;
                have_field = true;
            }
            // A request carries its Message ID, a response the ID it answers.
            t if t == tags::MESSAGE_ID || t == tags::MESSAGE_ID_BEING_RESPONDED_TO => {
                cmd.message_id = us()?;
                have_id = true;
            }
            t if t == tags::COMMAND_DATA_SET_TYPE => {
                cmd.data_set_type = us()?;
                have_type = true;
            }
            t if t == tags::PRIORITY => cmd.priority = Some(us()?),
            t if t == tags::STATUS => cmd.status = Some(us()?),
            t if t == tags::MOVE_DESTINATION => cmd.move_destination = Some(text()),
            t if t == tags::AFFECTED_SOP_CLASS_UID => cmd.affected_sop_class_uid = Some(text()),
            t if t == tags::AFFECTED_SOP_INSTANCE_UID => {
                cmd.affected_sop_instance_uid = Some(text())
            }
            _ => {}
        }
    }
    if !have_field {
        return Err(CommandError::Missing("CommandField"));
    }
    if !have_id && cmd.command_field != command_field::C_CANCEL_RQ {
        return Err(CommandError::Missing("MessageID"));
    }
    if !have_type {
        return Err(CommandError::Missing("CommandDataSetType"));
    }
    Ok(cmd)
}

/// Encoder of a command set: elements must be pushed in ascending tag order.
#[derive(Debug, Default)]
pub struct CommandBuilder {
    body: Vec<u8>,
}

impl CommandBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn element(mut self, tag: Tag, value: &[u8], pad: u8) -> Self {
        let padded = value.len() + (value.len() % 2);
        self.body.extend_from_slice(&tag.0.to_le_bytes());
        self.body.extend_from_slice(&tag.1.to_le_bytes());
        self.body.extend_from_slice(&(padded as u32).to_le_bytes());
        self.body.extend_from_slice(value);
        if value.len() % 2 == 1 {
            self.body.push(pad);
        }
        self
    }

    /// UI value (padded with NUL).
    pub fn uid(self, tag: Tag, uid: &str) -> Self {
        self.element(tag, uid.as_bytes(), 0)
    }

    /// US value.
    pub fn us(self, tag: Tag, v: u16) -> Self {
        self.element(tag, &v.to_le_bytes(), 0)
    }

    /// LO value (padded with space), cut to 64 characters.
    pub fn lo(self, tag: Tag, text: &str) -> Self {
        let t: String = text
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '\\')
            .take(64)
            .collect();
        self.element(tag, t.as_bytes(), b' ')
    }

    /// The encoded command set, with its group length first.
    pub fn build(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 12);
        out.extend_from_slice(&tags::COMMAND_GROUP_LENGTH.0.to_le_bytes());
        out.extend_from_slice(&tags::COMMAND_GROUP_LENGTH.1.to_le_bytes());
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&(self.body.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response command (C-ECHO-RSP, C-STORE-RSP…) to `rq`.
pub fn response(rq: &Command, response_field: u16, status: u16, comment: Option<&str>) -> Vec<u8> {
    let mut b = CommandBuilder::new();
    if let Some(c) = &rq.affected_sop_class_uid {
        b = b.uid(tags::AFFECTED_SOP_CLASS_UID, c);
    }
    b = b
        .us(tags::COMMAND_FIELD, response_field)
        .us(tags::MESSAGE_ID_BEING_RESPONDED_TO, rq.message_id)
        .us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET)
        .us(tags::STATUS, status);
    if let Some(c) = comment.filter(|_| status != status::SUCCESS) {
        b = b.lo(tags::ERROR_COMMENT, c);
    }
    if let Some(i) = &rq.affected_sop_instance_uid {
        b = b.uid(tags::AFFECTED_SOP_INSTANCE_UID, i);
    }
    b.build()
}

/// A response followed by a data set (a C-FIND-RSP pending with its identifier).
pub fn response_with_data(rq: &Command, response_field: u16, status: u16) -> Vec<u8> {
    let mut b = CommandBuilder::new();
    if let Some(c) = &rq.affected_sop_class_uid {
        b = b.uid(tags::AFFECTED_SOP_CLASS_UID, c);
    }
    b.us(tags::COMMAND_FIELD, response_field)
        .us(tags::MESSAGE_ID_BEING_RESPONDED_TO, rq.message_id)
        .us(tags::COMMAND_DATA_SET_TYPE, 0x0000)
        .us(tags::STATUS, status)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_rq() -> Vec<u8> {
        CommandBuilder::new()
            .uid(tags::AFFECTED_SOP_CLASS_UID, "1.2.840.10008.5.1.4.1.1.2")
            .us(tags::COMMAND_FIELD, command_field::C_STORE_RQ)
            .us(tags::MESSAGE_ID, 7)
            .us(tags::PRIORITY, 0)
            .us(tags::COMMAND_DATA_SET_TYPE, 0x0000)
            .uid(tags::AFFECTED_SOP_INSTANCE_UID, "1.2.3.4.5")
            .build()
    }

    #[test]
    fn round_trip() {
        let cmd = decode(&store_rq()).unwrap();
        assert_eq!(cmd.command_field, command_field::C_STORE_RQ);
        assert_eq!(cmd.message_id, 7);
        assert!(cmd.has_data_set());
        assert_eq!(cmd.affected_sop_instance_uid.as_deref(), Some("1.2.3.4.5"));
        let rsp = response(
            &cmd,
            command_field::C_STORE_RSP,
            status::CANNOT_UNDERSTAND,
            Some("bad"),
        );
        let r = decode(&rsp).unwrap();
        assert_eq!(r.command_field, command_field::C_STORE_RSP);
        assert!(!r.has_data_set());
    }

    #[test]
    fn truncated_and_bogus_are_errors_not_panics() {
        let full = store_rq();
        for cut in 0..full.len() {
            let _ = decode(&full[..cut]);
        }
        let mut bogus = full.clone();
        bogus[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&bogus), Err(CommandError::Truncated));
        assert_eq!(decode(&[]), Err(CommandError::Missing("CommandField")));
    }
}
