-- Indexes for study queries (pacs-store/src/query.rs): answers come newest first, and a
-- query with a limit can then walk studies in that order and stop at the limit instead of
-- sorting every match; ModalitiesInStudy matches through the series of a modality.
-- Measured on 100,000 studies (docs/benchmarks.md): PatientName=Wang* 70 → 11 ms p50,
-- ModalitiesInStudy=MR 103 → 9 ms p50. Keep in step with the other flavour.

CREATE INDEX studies_received ON studies (first_received_at, id);
CREATE INDEX series_modality ON series (modality, study_ref);
