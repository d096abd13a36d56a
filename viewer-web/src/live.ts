// The live feed (`GET /api/events`, a websocket): tasks created, claimed, released, due
// soon, overdue; reports signed and amended; critical findings; studies ready. The server
// sends each event only to users allowed to see it. One connection per logged-in page;
// when it drops, it reconnects (1 s, doubling to 30 s) with `after=<last id>`, and the
// server replays what was missed, so no event is lost and none comes twice.

export interface LiveEvent {
  id: number;
  kind: string;
  study_instance_uid: string;
  payload: Record<string, unknown> | null;
  /** Unix microseconds. */
  created_at: number;
}

export type LiveStatus = 'connecting' | 'live' | 'reconnecting' | 'off';

type Listener = (e: LiveEvent) => void;
type StatusListener = (s: LiveStatus) => void;

class LiveFeed {
  private socket: WebSocket | undefined;
  private lastId: number | undefined;
  private retryMs = 1000;
  private timer: number | undefined;
  private wanted = false;
  private status: LiveStatus = 'off';
  private readonly listeners = new Set<Listener>();
  private readonly statusListeners = new Set<StatusListener>();

  /** Opens the feed (once); later calls do nothing while it is open or reconnecting. */
  start(): void {
    if (this.wanted) return;
    this.wanted = true;
    this.connect();
  }

  /** Closes the feed (logout) and forgets the position. */
  stop(): void {
    this.wanted = false;
    if (this.timer !== undefined) window.clearTimeout(this.timer);
    this.timer = undefined;
    const s = this.socket;
    this.socket = undefined;
    if (s) {
      s.onclose = null;
      s.onerror = null;
      s.onmessage = null;
      s.close(1000, 'logged out');
    }
    this.lastId = undefined;
    this.setStatus('off');
  }

  /** Calls `fn` with every event from now on; returns the function that stops it. */
  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  onStatus(fn: StatusListener): () => void {
    this.statusListeners.add(fn);
    fn(this.status);
    return () => this.statusListeners.delete(fn);
  }

  private setStatus(s: LiveStatus): void {
    this.status = s;
    for (const fn of this.statusListeners) fn(s);
  }

  private connect(): void {
    if (!this.wanted) return;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const after = this.lastId !== undefined ? `?after=${this.lastId}` : '';
    let socket: WebSocket;
    try {
      socket = new WebSocket(`${scheme}//${location.host}/api/events${after}`);
    } catch {
      this.retry();
      return;
    }
    this.socket = socket;
    this.setStatus(this.lastId === undefined ? 'connecting' : 'reconnecting');
    socket.onopen = () => {
      this.retryMs = 1000;
      this.setStatus('live');
    };
    socket.onmessage = (msg) => {
      if (typeof msg.data !== 'string') return;
      let e: LiveEvent;
      try {
        e = JSON.parse(msg.data) as LiveEvent;
      } catch {
        return;
      }
      if (typeof e.id !== 'number') return;
      if (this.lastId !== undefined && e.id <= this.lastId) return;
      this.lastId = e.id;
      for (const fn of [...this.listeners]) fn(e);
    };
    socket.onclose = () => {
      if (this.socket === socket) this.socket = undefined;
      this.retry();
    };
  }

  private retry(): void {
    if (!this.wanted) return;
    this.setStatus('reconnecting');
    this.timer = window.setTimeout(() => {
      this.timer = undefined;
      this.connect();
    }, this.retryMs);
    this.retryMs = Math.min(30_000, this.retryMs * 2);
  }
}

export const live = new LiveFeed();

/** A sentence for an event, for notifications. */
export function describeEvent(e: LiveEvent): string {
  switch (e.kind) {
    case 'task_created':
      return 'A new study is ready to read.';
    case 'task_claimed':
      return 'A radiologist is reading a study.';
    case 'task_released':
      return 'A reading task went back to the worklist.';
    case 'task_reassigned':
      return 'A reading task was reassigned.';
    case 'task_due_soon':
      return 'A reading task is due soon.';
    case 'task_overdue':
      return 'A reading task is overdue.';
    case 'report_signed':
      return 'A report was signed.';
    case 'report_amended':
      return 'A signed report received an addendum.';
    case 'critical_finding':
      return 'Critical finding: a report needs your acknowledgement.';
    case 'critical_acknowledged':
      return 'A critical finding was acknowledged.';
    case 'critical_unacknowledged':
      return 'A critical finding is still not acknowledged.';
    case 'preliminary_saved':
      return 'A preliminary impression was saved.';
    case 'study_ready':
      return 'A study is complete and ready to read.';
    case 'study_updated':
      return 'A study received new images.';
    default:
      if (e.kind.startsWith('delivery_')) return `Report delivery: ${e.kind.slice('delivery_'.length).replace(/_/g, ' ')}.`;
      return `Event: ${e.kind}.`;
  }
}
