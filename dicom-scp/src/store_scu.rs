//! The archive as a storage SCU: one C-STORE of a stored instance over an association the
//! caller opened (C-MOVE sub-operations, report delivery).

use std::time::Duration;

use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use pacs_store::archive::Archive;
use pacs_store::query::Retrievable;

use crate::dimse::{self, status};
use crate::get::store_rq;

/// How long one C-STORE to the destination may take to be answered.
const STORE_TIMEOUT: Duration = Duration::from_secs(120);

/// One C-STORE to the destination: `Ok(status)` of its response; `Err` starting with
/// "link:" when the association broke. The instance goes in `transfer_syntax` (that of
/// context `pc`), converted when it was stored in another ([`crate::transcode`]).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn store_one<S>(
    sub: &mut dicom_ul::association::client::AsyncClientAssociation<S>,
    item: &Retrievable,
    pc: u8,
    transfer_syntax: &str,
    message_id: u16,
    max_pdv: usize,
    archive: &Archive,
    originator: Option<(&str, u16)>,
) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let dataset = crate::transcode::dataset_in(archive, item, transfer_syntax).await?;
    let rq = store_rq(item, message_id, originator);
    let link = |e: dicom_ul::association::Error| format!("link: {e}");
    sub.send(&Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type: PDataValueType::Command,
            is_last: true,
            data: rq,
        }],
    })
    .await
    .map_err(link)?;
    let chunks: Vec<&[u8]> = dataset.chunks(max_pdv).collect();
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.iter().enumerate() {
        sub.send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Data,
                is_last: i == last,
                data: chunk.to_vec(),
            }],
        })
        .await
        .map_err(link)?;
    }
    let mut buf = Vec::new();
    loop {
        let pdu = tokio::time::timeout(STORE_TIMEOUT, sub.receive())
            .await
            .map_err(|_| "link: the destination did not answer a C-STORE in time".to_owned())?
            .map_err(link)?;
        let Pdu::PData { data } = pdu else {
            return Err("link: the destination ended the association".into());
        };
        for pdv in data {
            buf.extend_from_slice(&pdv.data);
            if pdv.is_last && pdv.value_type == PDataValueType::Command {
                let rsp =
                    dimse::decode(&buf).map_err(|e| format!("link: malformed response: {e}"))?;
                return Ok(rsp.status.unwrap_or(status::PROCESSING_FAILURE));
            }
        }
    }
}
