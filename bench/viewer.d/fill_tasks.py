#!/usr/bin/env python3
"""Gives a radiologist COUNT open reading tasks in total, for bench/viewer's worklist
measurement: index rows written directly (as bench/qido/fill_index.py writes studies), not
made by the routing. pacs must be stopped. The studies come from fill_index.py (synthetic
names, 2 series × 5 instances each, no objects): one task per study whose UID starts with
fill_index.py's root, until the radiologist has COUNT open tasks.

    fill_tasks.py INDEX_DB USERNAME COUNT

Priorities: 5 % STAT, 15 % urgent, the rest routine; deadlines 1 to 72 hours ahead (none
overdue), kind "read", clinic of the study, no rule.
"""
import random
import sqlite3
import sys
import time

db, username, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
random.seed(6)
c = sqlite3.connect(db)
(uid,) = c.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
(have,) = c.execute(
    "SELECT COUNT(*) FROM reading_tasks WHERE state IN ('open', 'claimed') "
    "AND (assigned_to = ? OR claimed_by = ?)", (uid, uid)).fetchone()
want = count - have
studies = c.execute(
    "SELECT s.id, s.clinic_id FROM studies s WHERE s.study_instance_uid LIKE '1.2.826.0.1.3680043.99.%' "
    "AND NOT EXISTS (SELECT 1 FROM reading_tasks t WHERE t.study_ref = s.id) ORDER BY s.id LIMIT ?",
    (max(want, 0),)).fetchall()
if len(studies) < want:
    sys.exit(f"fill_tasks.py: {len(studies)} studies without a task, {want} needed")
(event,) = c.execute("SELECT COALESCE(MAX(source_event_id), 0) FROM reading_tasks").fetchone()
event = max(event, 10_000_000)
now = int(time.time() * 1e6)
rows = []
for i, (sid, clinic) in enumerate(studies):
    r = random.random()
    priority = "stat" if r < 0.05 else "urgent" if r < 0.20 else "routine"
    due = now + random.randrange(3600, 72 * 3600) * 1_000_000
    rows.append((event + i + 1, sid, clinic, "read", priority, "open", uid, now, due, now, now))
c.executemany(
    "INSERT INTO reading_tasks (source_event_id, study_ref, clinic_id, kind, priority, state, "
    "assigned_to, ready_at, due_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
c.commit()
(total,) = c.execute(
    "SELECT COUNT(*) FROM reading_tasks WHERE state IN ('open', 'claimed') "
    "AND (assigned_to = ? OR claimed_by = ?)", (uid, uid)).fetchone()
print(total)
