// DICOM JSON (PS3.18 F.2) as the archive's QIDO-RS and WADO-RS metadata answer it.

/** One attribute of a DICOM JSON data set. */
export interface DicomAttribute {
  vr: string;
  Value?: unknown[];
  BulkDataURI?: string;
  InlineBinary?: string;
}

/** A data set: attributes by tag (`0020000D`). */
export type DicomJson = Record<string, DicomAttribute | undefined>;

export const Tag = {
  SpecificCharacterSet: '00080005',
  StudyDate: '00080020',
  StudyTime: '00080030',
  AccessionNumber: '00080050',
  Modality: '00080060',
  ModalitiesInStudy: '00080061',
  StudyDescription: '00081030',
  SeriesDescription: '0008103E',
  SOPClassUID: '00080016',
  SOPInstanceUID: '00080018',
  PatientName: '00100010',
  PatientID: '00100020',
  PatientBirthDate: '00100030',
  PatientSex: '00100040',
  BodyPartExamined: '00180015',
  StudyInstanceUID: '0020000D',
  SeriesInstanceUID: '0020000E',
  SeriesNumber: '00200011',
  InstanceNumber: '00200013',
  ImagePositionPatient: '00200032',
  ImageOrientationPatient: '00200037',
  FrameOfReferenceUID: '00200052',
  FrameTime: '00181063',
  CineRate: '00180040',
  RecommendedDisplayFrameRate: '00082144',
  NumberOfStudyRelatedSeries: '00201206',
  NumberOfStudyRelatedInstances: '00201208',
  NumberOfSeriesRelatedInstances: '00201209',
  NumberOfFrames: '00280008',
  Rows: '00280010',
  Columns: '00280011',
} as const;

/** The first value of an attribute, if any. */
export function first(ds: DicomJson, tag: string): unknown {
  return ds[tag]?.Value?.[0];
}

/** The first value as text ('' when absent). Numbers become their decimal text. */
export function text(ds: DicomJson, tag: string): string {
  const v = first(ds, tag);
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  return '';
}

/** All values as text. */
export function texts(ds: DicomJson, tag: string): string[] {
  return (ds[tag]?.Value ?? []).filter((v) => typeof v === 'string' || typeof v === 'number').map(String);
}

/** The first value as a number (IS/DS/US… may come as numbers or as strings). */
export function num(ds: DicomJson, tag: string): number | undefined {
  const v = first(ds, tag);
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

/** All values as numbers (NaN for a value that is not one). */
export function nums(ds: DicomJson, tag: string): number[] {
  return (ds[tag]?.Value ?? []).map((v) => (typeof v === 'number' ? v : Number(v)));
}

/** One component group of a person name: `Family^Given^Middle^Prefix^Suffix`. */
function nameGroup(group: string | undefined, separator: string): string {
  if (!group) return '';
  return group
    .split('^')
    .map((c) => c.trim())
    .filter((c) => c.length > 0)
    .join(separator);
}

/**
 * A Person Name (PN) for people to read: the alphabetic group with its components
 * separated by spaces, then the ideographic group (written without spaces, as Chinese,
 * Japanese and Korean names are) in parentheses. `Liu^Yan=刘^䶮=` → `Liu Yan (刘䶮)`.
 */
export function personName(ds: DicomJson, tag: string): string {
  const v = first(ds, tag);
  if (typeof v === 'string') return nameGroup(v, ' ');
  if (!v || typeof v !== 'object') return '';
  const pn = v as { Alphabetic?: string; Ideographic?: string; Phonetic?: string };
  const alphabetic = nameGroup(pn.Alphabetic, ' ');
  const ideographic = nameGroup(pn.Ideographic, '');
  const phonetic = nameGroup(pn.Phonetic, ' ');
  const main = alphabetic || phonetic;
  if (main && ideographic) return `${main} (${ideographic})`;
  return main || ideographic;
}

/** A DA value (`YYYYMMDD`) as `YYYY-MM-DD`; anything else as it is. */
export function date(ds: DicomJson, tag: string): string {
  const v = text(ds, tag);
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(v);
  return m ? `${m[1]}-${m[2]}-${m[3]}` : v;
}

/** A UID as it may go into a URL path: digits and dots only, at most 64 characters. */
export function isUid(s: string): boolean {
  return /^[0-9]+(\.[0-9]+)*$/.test(s) && s.length <= 64;
}
