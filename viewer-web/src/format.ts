// Values as people read them: person names as stored, DICOM dates, times (Unix
// microseconds), deadlines counting down, ages.

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
 * A Person Name as the archive stores it (groups joined by `=`) for people to read, as
 * `dicom.personName` does for DICOM JSON: `Liu^Yan=刘^䶮=` → `Liu Yan (刘䶮)`.
 */
export function personNameText(raw: string | null | undefined): string {
  if (!raw) return '';
  const [alphabetic, ideographic, phonetic] = raw.split('=');
  const main = nameGroup(alphabetic, ' ') || nameGroup(phonetic, ' ');
  const ideo = nameGroup(ideographic, '');
  if (main && ideo) return `${main} (${ideo})`;
  return main || ideo;
}

/** `YYYYMMDD` → `YYYY-MM-DD`; anything else as it is. */
export function dicomDate(v: string | null | undefined): string {
  if (!v) return '';
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(v);
  return m ? `${m[1]}-${m[2]}-${m[3]}` : v;
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

/** Unix microseconds as local `YYYY-MM-DD HH:MM`. */
export function dateTime(micros: number | null | undefined): string {
  if (micros === null || micros === undefined) return '';
  const d = new Date(micros / 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Unix microseconds as local `HH:MM:SS`. */
export function clockTime(micros: number): string {
  const d = new Date(micros / 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * Time left until `dueMicros` at `nowMs`: `2h 05m`, `4m 09s`, or `overdue 12m 30s`.
 */
export function countdown(dueMicros: number, nowMs: number): { text: string; overdue: boolean } {
  const left = Math.round((dueMicros / 1000 - nowMs) / 1000);
  const overdue = left <= 0;
  const s = Math.abs(left);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  let body: string;
  if (d > 0) body = `${d}d ${pad(h)}h ${pad(m)}m`;
  else if (h > 0) body = `${h}h ${pad(m)}m ${pad(sec)}s`;
  else body = `${m}m ${pad(sec)}s`;
  return { text: overdue ? `overdue ${body}` : body, overdue };
}

/** Age in whole years on `onDate` (both `YYYYMMDD`), or '' when either is missing. */
export function ageOn(birth: string | null | undefined, onDate: string | null | undefined): string {
  const b = birth && /^(\d{4})(\d{2})(\d{2})$/.exec(birth);
  if (!b) return '';
  const o = onDate && /^(\d{4})(\d{2})(\d{2})$/.exec(onDate);
  const on = o ? [Number(o[1]), Number(o[2]), Number(o[3])] : [new Date().getFullYear(), new Date().getMonth() + 1, new Date().getDate()];
  let years = on[0] - Number(b[1]);
  if (on[1] < Number(b[2]) || (on[1] === Number(b[2]) && on[2] < Number(b[3]))) years--;
  return years >= 0 ? `${years} y` : '';
}

/** PatientSex (M, F, O) in words. */
export function sexText(v: string): string {
  switch (v.toUpperCase()) {
    case 'M':
      return 'male';
    case 'F':
      return 'female';
    case 'O':
      return 'other';
    default:
      return v || '';
  }
}

/** A priority for people: STAT, urgent, routine. */
export function priorityText(p: string): string {
  return p === 'stat' ? 'STAT' : p;
}
